#include "agent/control_server.hpp"

#include <sodium.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstring>
#include <stdexcept>
#include <unordered_map>

namespace knit::agent {

namespace {

using Socket = asio::local::stream_protocol::socket;
using SteadyDuration = std::chrono::steady_clock::duration;

constexpr mode_t kDirectoryMode = 0755;
constexpr mode_t kSocketMode = 0600;
constexpr std::size_t kReadChunk = 4096;
constexpr auto kAcceptRetryDelay = std::chrono::milliseconds(100);

std::string errno_message(int error) { return std::error_code(error, std::system_category()).message(); }

void ensure_directory(const std::string& directory) {
  if (directory.empty()) return;
  for (std::size_t slash = directory.find('/', 1);; slash = directory.find('/', slash + 1)) {
    std::string prefix = directory.substr(0, slash);
    if (::mkdir(prefix.c_str(), kDirectoryMode) != 0 && errno != EEXIST)
      throw std::runtime_error("cannot create " + prefix + ": " + errno_message(errno));
    if (slash == std::string::npos) break;
  }
}

std::string parent_directory(const std::string& path) {
  auto slash = path.rfind('/');
  if (slash == std::string::npos) return {};
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

bool socket_is_live(const std::string& path) {
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  std::memcpy(address.sun_path, path.data(), path.size());
  int result = ::connect(fd, reinterpret_cast<const sockaddr*>(&address), sizeof address);
  bool live = result == 0 || errno == EAGAIN || errno == EINPROGRESS;
  ::close(fd);
  return live;
}

void wipe(std::string& text) {
  sodium_memzero(text.data(), text.size());
  text.clear();
}

}  // namespace

class ControlConnection;

class ControlServer::Core : public std::enable_shared_from_this<Core> {
 public:
  Core(asio::io_context& io, std::string path, ControlHandler& handler, SteadyDuration idle_timeout)
      : path_(std::move(path)), handler_(handler), idle_timeout_(idle_timeout), acceptor_(io), retry_timer_(io) {}

  void open();
  void accept_next();
  void shutdown();
  void forget(ControlConnection* connection) { connections_.erase(connection); }
  ControlHandler& handler() { return handler_; }
  std::size_t connection_count() const { return connections_.size(); }

 private:
  void on_accept(std::error_code ec, Socket socket);
  void remove_socket_file();

  std::string path_;
  ControlHandler& handler_;
  SteadyDuration idle_timeout_;
  asio::local::stream_protocol::acceptor acceptor_;
  asio::steady_timer retry_timer_;
  std::unordered_map<ControlConnection*, std::shared_ptr<ControlConnection>> connections_;
  bool stopped_ = false;
  bool bound_ = false;
  dev_t socket_device_ = 0;
  ino_t socket_inode_ = 0;
};

// One CLI client: a line in, the answer out, then the next line.
class ControlConnection : public std::enable_shared_from_this<ControlConnection> {
 public:
  ControlConnection(ControlServer::Core& core, Socket socket, SteadyDuration idle_timeout)
      : core_(&core), socket_(std::move(socket)), deadline_(socket_.get_executor()), idle_timeout_(idle_timeout) {}
  ~ControlConnection() {
    wipe(input_);
    sodium_memzero(read_buffer_.data(), read_buffer_.size());
  }

  void start() {
    arm_deadline();
    next();
  }
  void detach() {
    core_ = nullptr;
    close();
  }

 private:
  void next();
  void dispatch(std::string line);
  void answer(const localapi::ControlResponse& response, bool then_close);
  void read();
  void arm_deadline();
  void close();

  ControlServer::Core* core_;
  Socket socket_;
  asio::steady_timer deadline_;
  SteadyDuration idle_timeout_;
  std::array<char, kReadChunk> read_buffer_{};
  std::string input_;
  std::string output_;
  bool busy_ = false;  // a request is being answered
  bool closed_ = false;
};

void ControlConnection::next() {
  if (closed_ || busy_) return;
  const auto newline = input_.find('\n');
  if (newline == std::string::npos) {
    if (input_.size() > localapi::kMaxRequestLine) {
      wipe(input_);
      return answer(localapi::ErrorReply{"bad request: the line is too long"}, /*then_close=*/true);
    }
    return read();
  }
  std::string line = input_.substr(0, newline);
  sodium_memzero(input_.data(), newline + 1);
  input_.erase(0, newline + 1);
  if (!line.empty() && line.back() == '\r') line.pop_back();
  if (line.find_first_not_of(" \t") == std::string::npos) return next();  // blank line
  dispatch(std::move(line));
}

void ControlConnection::dispatch(std::string line) {
  auto parsed = localapi::parse_request(line);
  wipe(line);  // may hold a join token
  if (auto* error = std::get_if<localapi::ProtocolError>(&parsed)) return answer(localapi::ErrorReply{error->message}, false);
  busy_ = true;
  deadline_.cancel();  // `up` may take a while: the client is waiting, not idle
  std::weak_ptr<ControlConnection> weak = weak_from_this();
  auto replied = std::make_shared<bool>(false);
  ControlHandler::Reply reply = [weak, replied](localapi::ControlResponse response) {
    if (*replied) return;
    *replied = true;
    if (auto self = weak.lock(); self && !self->closed_) self->answer(response, false);
  };
  try {
    core_->handler().handle_request(std::move(std::get<localapi::ControlRequest>(parsed)), reply);
  } catch (const std::exception& e) {
    reply(localapi::ErrorReply{std::string("knitd failed: ") + e.what()});
  }
}

void ControlConnection::answer(const localapi::ControlResponse& response, bool then_close) {
  busy_ = true;
  output_ = localapi::encode_response(response);
  output_ += '\n';
  asio::async_write(socket_, asio::buffer(output_),
                    [self = shared_from_this(), then_close](std::error_code ec, std::size_t) {
                      self->output_.clear();
                      self->busy_ = false;
                      if (self->closed_) return;
                      if (ec || then_close) return self->close();
                      self->arm_deadline();
                      self->next();
                    });
}

void ControlConnection::read() {
  socket_.async_read_some(asio::buffer(read_buffer_), [self = shared_from_this()](std::error_code ec, std::size_t n) {
    if (self->closed_) return;
    if (ec) return self->close();  // end of stream, reset, or shutdown
    self->input_.append(self->read_buffer_.data(), n);
    sodium_memzero(self->read_buffer_.data(), n);
    self->next();
  });
}

void ControlConnection::arm_deadline() {
  deadline_.expires_after(idle_timeout_);
  deadline_.async_wait([self = shared_from_this()](std::error_code ec) {
    if (ec == asio::error::operation_aborted || self->closed_ || self->busy_) return;
    if (self->deadline_.expiry() > std::chrono::steady_clock::now()) return;  // re-armed since
    self->close();
  });
}

void ControlConnection::close() {
  if (closed_) return;
  auto keep_alive = shared_from_this();
  closed_ = true;
  std::error_code ignored;
  deadline_.cancel();
  socket_.close(ignored);
  if (core_ != nullptr) {
    auto* core = core_;
    core_ = nullptr;
    core->forget(this);
  }
}

// ---------------------------------------------------------------- the listening socket

void ControlServer::Core::open() {
  if (path_.empty() || path_.size() >= sizeof(sockaddr_un::sun_path))
    throw std::runtime_error("control socket path is empty or too long: " + path_);
  ensure_directory(parent_directory(path_));

  asio::local::stream_protocol::endpoint endpoint(path_);
  std::error_code ec;
  acceptor_.open(endpoint.protocol(), ec);
  if (ec) throw std::runtime_error("cannot create the control socket: " + ec.message());
  ::fchmod(acceptor_.native_handle(), kSocketMode);  // the bound file takes this mode

  acceptor_.bind(endpoint, ec);
  if (ec == asio::error::address_in_use) {
    struct stat info {};
    if (::lstat(path_.c_str(), &info) == 0 && !S_ISSOCK(info.st_mode))
      throw std::runtime_error(path_ + " exists and is not a socket: remove it, or pick another --socket");
    if (socket_is_live(path_))
      throw std::runtime_error("another knitd already serves " + path_ + ": stop it, or pick another --socket");
    ::unlink(path_.c_str());  // stale, left by a knitd that died
    ec.clear();
    acceptor_.bind(endpoint, ec);
  }
  if (ec) throw std::runtime_error("cannot bind " + path_ + ": " + ec.message());
  bound_ = true;

  struct stat info {};
  if (::chmod(path_.c_str(), kSocketMode) != 0 || ::lstat(path_.c_str(), &info) != 0) {
    int error = errno;
    remove_socket_file();
    throw std::runtime_error("cannot set up " + path_ + ": " + errno_message(error));
  }
  socket_device_ = info.st_dev;
  socket_inode_ = info.st_ino;
  acceptor_.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) {
    remove_socket_file();
    throw std::runtime_error("cannot listen on " + path_ + ": " + ec.message());
  }
}

void ControlServer::Core::accept_next() {
  acceptor_.async_accept([self = shared_from_this()](std::error_code ec, Socket socket) {
    self->on_accept(ec, std::move(socket));
  });
}

void ControlServer::Core::on_accept(std::error_code ec, Socket socket) {
  if (stopped_ || ec == asio::error::operation_aborted) return;
  if (ec) {
    retry_timer_.expires_after(kAcceptRetryDelay);
    retry_timer_.async_wait([self = shared_from_this()](std::error_code wait_ec) {
      if (!wait_ec && !self->stopped_) self->accept_next();
    });
    return;
  }
  if (connections_.size() >= ControlServer::kMaxConnections) {
    std::error_code ignored;
    socket.close(ignored);
  } else {
    auto connection = std::make_shared<ControlConnection>(*this, std::move(socket), idle_timeout_);
    connections_.emplace(connection.get(), connection);
    connection->start();
  }
  accept_next();
}

void ControlServer::Core::shutdown() {
  if (stopped_) return;
  stopped_ = true;
  remove_socket_file();
  std::error_code ignored;
  acceptor_.close(ignored);
  retry_timer_.cancel();
  auto connections = std::move(connections_);
  connections_.clear();
  for (auto& [raw, connection] : connections) connection->detach();
}

void ControlServer::Core::remove_socket_file() {
  if (!bound_) return;
  bound_ = false;
  struct stat info {};
  if (::lstat(path_.c_str(), &info) != 0) return;
  if (socket_inode_ != 0 && (info.st_dev != socket_device_ || info.st_ino != socket_inode_)) return;
  ::unlink(path_.c_str());
}

ControlServer::ControlServer(asio::io_context& io, std::string path, ControlHandler& handler)
    : io_(io), path_(std::move(path)), handler_(handler) {}

ControlServer::~ControlServer() { stop(); }

void ControlServer::start() {
  if (core_) return;
  auto core = std::make_shared<Core>(io_, path_, handler_, idle_timeout_);
  core->open();
  core->accept_next();
  core_ = std::move(core);
}

void ControlServer::stop() {
  if (!core_) return;
  core_->shutdown();
  core_.reset();
}

std::size_t ControlServer::connection_count() const { return core_ ? core_->connection_count() : 0; }

}  // namespace knit::agent
