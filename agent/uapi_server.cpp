#include "agent/uapi_server.hpp"

#include <sodium.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstring>
#include <exception>
#include <stdexcept>
#include <system_error>
#include <unordered_map>
#include <utility>

namespace knit::agent {

namespace detail {

namespace {

using Socket = asio::local::stream_protocol::socket;
using Duration = std::chrono::steady_clock::duration;

constexpr mode_t kDirectoryMode = 0755;  // wireguard-go: os.MkdirAll(socketDirectory, 0755)
constexpr mode_t kSocketMode = 0700;     // wireguard-go: bind under umask 0077
constexpr std::size_t kReadChunk = 4096;
// Stop turning parsed requests into answers while this much output waits to be written, so a
// burst of pipelined gets cannot make the answer buffer grow without bound.
constexpr std::size_t kOutputHighWater = 64 * 1024;
constexpr auto kAcceptRetryDelay = std::chrono::milliseconds(100);

std::string errno_message(int error) { return std::error_code(error, std::system_category()).message(); }

// mkdir -p with wireguard-go's mode, for the folders above the socket.
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

// A process serves the socket if a connect succeeds (or would block on a full backlog).
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

// Appends text that may hold key material to out, leaving no copy behind in freed memory, and
// wipes text.
void append_wiped(std::string& out, std::string& text) {
  if (out.empty()) {
    std::swap(out, text);
  } else {
    if (out.capacity() < out.size() + text.size()) {
      std::string bigger;
      bigger.reserve(2 * (out.size() + text.size()));
      bigger.append(out);
      sodium_memzero(out.data(), out.size());
      std::swap(out, bigger);
    }
    out.append(text);
  }
  sodium_memzero(text.data(), text.size());
  text.clear();
}

}  // namespace

class UapiConnection;

class UapiServerCore : public std::enable_shared_from_this<UapiServerCore> {
 public:
  UapiServerCore(asio::io_context& io, std::string path, UapiHandler& handler,
                 Duration idle_timeout, std::shared_ptr<UapiServerCounters> counters)
      : path_(std::move(path)),
        handler_(handler),
        idle_timeout_(idle_timeout),
        counters_(std::move(counters)),
        acceptor_(io),
        retry_timer_(io) {}

  void open();
  void accept_next();
  void shutdown();
  void forget(UapiConnection* connection) { connections_.erase(connection); }

  UapiHandler& handler() { return handler_; }
  UapiServerCounters& counters() { return *counters_; }
  std::size_t connection_count() const { return connections_.size(); }

 private:
  void on_accept(std::error_code ec, Socket socket);
  void remove_socket_file();

  std::string path_;
  UapiHandler& handler_;
  Duration idle_timeout_;
  std::shared_ptr<UapiServerCounters> counters_;
  asio::local::stream_protocol::acceptor acceptor_;
  asio::steady_timer retry_timer_;
  std::unordered_map<UapiConnection*, std::shared_ptr<UapiConnection>> connections_;
  bool stopped_ = false;
  bool bound_ = false;
  dev_t socket_device_ = 0;  // identity of the socket file we bound, so that stop() never
  ino_t socket_inode_ = 0;   // removes one that another process put in its place
};

// One client: reads requests, answers them in order, one write at a time.
class UapiConnection : public std::enable_shared_from_this<UapiConnection> {
 public:
  UapiConnection(UapiServerCore& core, Socket socket, Duration idle_timeout)
      : core_(&core),
        socket_(std::move(socket)),
        deadline_(socket_.get_executor()),
        idle_timeout_(idle_timeout) {}
  ~UapiConnection() {
    sodium_memzero(read_buffer_.data(), read_buffer_.size());
    sodium_memzero(output_.data(), output_.size());
  }
  UapiConnection(const UapiConnection&) = delete;
  UapiConnection& operator=(const UapiConnection&) = delete;

  void start() {
    arm_deadline();
    pump();
  }

  // The server is stopping: close without calling back into it.
  void detach() {
    core_ = nullptr;
    close();
  }

 private:
  void pump();
  void answer(wg::UapiParser::Event& event);
  void read();
  void write();
  void arm_deadline();
  void close();

  UapiServerCore* core_;  // null once closed
  Socket socket_;
  asio::steady_timer deadline_;
  Duration idle_timeout_;
  wg::UapiParser parser_;
  std::array<char, kReadChunk> read_buffer_{};
  std::string output_;
  bool closed_ = false;
};

void UapiConnection::pump() {
  while (!closed_ && output_.size() < kOutputHighWater) {
    auto event = parser_.next();
    if (std::holds_alternative<wg::UapiParser::NeedMore>(event)) break;
    answer(event);
    arm_deadline();  // a completed request: the client is not idle
  }
  // The handler may have stopped the server.
  if (closed_) return;
  if (!output_.empty()) {
    write();
  } else if (parser_.fatal()) {
    close();
  } else {
    read();
  }
}

void UapiConnection::answer(wg::UapiParser::Event& event) {
  std::string text;
  if (std::holds_alternative<wg::UapiParser::Get>(event)) {
    try {
      text = wg::format_get(core_->handler().uapi_get());
    } catch (const std::exception&) {
      text = wg::format_errno(wg::kUapiErrorIo);
    }
  } else if (auto* set = std::get_if<wg::UapiParser::Set>(&event)) {
    int result = wg::kUapiErrorIo;
    try {
      result = core_->handler().uapi_set(set->request);
    } catch (const std::exception&) {
      result = wg::kUapiErrorIo;
    }
    text = wg::format_errno(result);
  } else if (auto* error = std::get_if<wg::UapiParser::Error>(&event)) {
    ++core_->counters().malformed;
    text = wg::format_errno(error->errno_value);
  }
  append_wiped(output_, text);
}

void UapiConnection::read() {
  socket_.async_read_some(
      asio::buffer(read_buffer_), [self = shared_from_this()](std::error_code ec, std::size_t n) {
        if (self->closed_) return;
        if (ec) {  // end of stream, reset, or shutdown (operation_aborted)
          self->close();
          return;
        }
        self->parser_.feed(std::string_view(self->read_buffer_.data(), n));
        sodium_memzero(self->read_buffer_.data(), n);
        self->pump();
      });
}

void UapiConnection::write() {
  asio::async_write(socket_, asio::buffer(output_),
                    [self = shared_from_this()](std::error_code ec, std::size_t) {
                      sodium_memzero(self->output_.data(), self->output_.size());
                      self->output_.clear();
                      if (self->closed_) return;
                      if (ec) {
                        self->close();
                        return;
                      }
                      self->pump();
                    });
}

void UapiConnection::arm_deadline() {
  deadline_.expires_after(idle_timeout_);
  deadline_.async_wait([self = shared_from_this()](std::error_code ec) {
    if (ec == asio::error::operation_aborted || self->closed_) return;
    // A wait that completed just before being re-armed: the new deadline stands.
    if (self->deadline_.expiry() > std::chrono::steady_clock::now()) return;
    self->close();
  });
}

void UapiConnection::close() {
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

void UapiServerCore::open() {
  if (path_.empty() || path_.size() >= sizeof(sockaddr_un::sun_path))
    throw std::runtime_error("UAPI socket path is empty or too long: " + path_);
  ensure_directory(parent_directory(path_));

  asio::local::stream_protocol::endpoint endpoint(path_);
  std::error_code ec;
  acceptor_.open(endpoint.protocol(), ec);
  if (ec) throw std::runtime_error("cannot create the UAPI socket: " + ec.message());
  // Linux gives the bound file the socket inode's mode (minus the umask): no window in which
  // the file is more open than kSocketMode, and no process-wide umask change.
  ::fchmod(acceptor_.native_handle(), kSocketMode);

  acceptor_.bind(endpoint, ec);
  if (ec == asio::error::address_in_use) {
    struct stat info {};
    if (::lstat(path_.c_str(), &info) == 0 && !S_ISSOCK(info.st_mode))
      throw std::runtime_error(path_ + " exists and is not a socket");
    if (socket_is_live(path_))
      throw std::runtime_error("another process is already serving " + path_);
    ::unlink(path_.c_str());  // stale, left behind by a process that died
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

void UapiServerCore::accept_next() {
  acceptor_.async_accept([self = shared_from_this()](std::error_code ec, Socket socket) {
    self->on_accept(ec, std::move(socket));
  });
}

void UapiServerCore::on_accept(std::error_code ec, Socket socket) {
  if (stopped_ || ec == asio::error::operation_aborted) return;
  if (ec) {
    // Out of descriptors or memory, or the client gave up: try again shortly, never spin.
    retry_timer_.expires_after(kAcceptRetryDelay);
    retry_timer_.async_wait([self = shared_from_this()](std::error_code wait_ec) {
      if (!wait_ec && !self->stopped_) self->accept_next();
    });
    return;
  }
  if (connections_.size() >= UapiServer::kMaxConnections) {
    std::error_code ignored;
    socket.close(ignored);
  } else {
    auto connection = std::make_shared<UapiConnection>(*this, std::move(socket), idle_timeout_);
    connections_.emplace(connection.get(), connection);
    connection->start();
  }
  accept_next();
}

void UapiServerCore::shutdown() {
  if (stopped_) return;
  stopped_ = true;
  remove_socket_file();  // first, so that no client finds the name once any is turned away
  std::error_code ignored;
  acceptor_.close(ignored);
  retry_timer_.cancel();
  auto connections = std::move(connections_);
  connections_.clear();
  for (auto& [raw, connection] : connections) connection->detach();
}

void UapiServerCore::remove_socket_file() {
  if (!bound_) return;
  bound_ = false;
  struct stat info {};
  if (::lstat(path_.c_str(), &info) != 0) return;
  if (socket_inode_ != 0 && (info.st_dev != socket_device_ || info.st_ino != socket_inode_))
    return;
  ::unlink(path_.c_str());
}

}  // namespace detail

std::string UapiServer::socket_path_for(std::string_view interface_name) {
  if (interface_name.empty() || interface_name.find('/') != std::string_view::npos)
    throw std::invalid_argument("invalid interface name: " + std::string(interface_name));
  return "/var/run/wireguard/" + std::string(interface_name) + ".sock";
}

UapiServer::UapiServer(asio::io_context& io, std::string path, UapiHandler& handler)
    : io_(io), path_(std::move(path)), handler_(handler) {}

UapiServer::~UapiServer() { stop(); }

void UapiServer::start() {
  if (core_) return;
  auto core = std::make_shared<detail::UapiServerCore>(io_, path_, handler_, idle_timeout_,
                                                       counters_);
  core->open();
  core->accept_next();
  core_ = std::move(core);
}

void UapiServer::stop() {
  if (!core_) return;
  core_->shutdown();
  core_.reset();
}

std::size_t UapiServer::connection_count() const {
  return core_ ? core_->connection_count() : 0;
}

}  // namespace knit::agent
