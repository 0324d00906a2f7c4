#include "net/unix_socket_server.hpp"

#include <sodium.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>
#include <system_error>
#include <unordered_map>
#include <utility>

namespace knit::net {

namespace {

constexpr mode_t kDirectoryMode = 0755;  // wireguard-go: os.MkdirAll(socketDirectory, 0755)
constexpr auto kAcceptRetryDelay = std::chrono::milliseconds(100);

std::string errno_message(int error) { return std::error_code(error, std::system_category()).message(); }

// mkdir -p, for the folders above the socket.
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

void wipe(std::string& text) {
  sodium_memzero(text.data(), text.size());
  text.clear();
}

}  // namespace

// ---------------------------------------------------------------- one connection

UnixSocketConnection::UnixSocketConnection(Owner& owner, Socket socket, SteadyDuration idle_timeout)
    : owner_(&owner),
      socket_(std::move(socket)),
      deadline_(socket_.get_executor()),
      idle_timeout_(idle_timeout),
      credentials_(read_peer_credentials(socket_.native_handle())) {}

UnixSocketConnection::~UnixSocketConnection() {
  session_.reset();  // before the buffers it may point into
  sodium_memzero(read_buffer_.data(), read_buffer_.size());
  sodium_memzero(output_.data(), output_.size());
}

void UnixSocketConnection::start(std::unique_ptr<UnixSocketSession> session) {
  session_ = std::move(session);
  arm_idle();
  session_->resume();
}

void UnixSocketConnection::detach() {
  owner_ = nullptr;
  close();
}

void UnixSocketConnection::read() {
  socket_.async_read_some(asio::buffer(read_buffer_), [self = shared_from_this()](std::error_code ec, std::size_t n) {
    if (self->closed_) return;
    if (ec) return self->close();  // end of stream, reset, or shutdown (operation_aborted)
    self->session_->take(std::string_view(self->read_buffer_.data(), n));
    sodium_memzero(self->read_buffer_.data(), n);
    if (!self->closed_) self->session_->resume();
  });
}

void UnixSocketConnection::write(std::string& text) { send(text, false); }
void UnixSocketConnection::write_then_close(std::string& text) { send(text, true); }

void UnixSocketConnection::send(std::string& text, bool then_close) {
  wipe(output_);
  std::swap(output_, text);
  asio::async_write(socket_, asio::buffer(output_),
                    [self = shared_from_this(), then_close](std::error_code ec, std::size_t) {
                      wipe(self->output_);
                      if (self->closed_) return;
                      if (ec || then_close) return self->close();
                      self->session_->written();
                    });
}

void UnixSocketConnection::arm_idle() {
  held_ = false;
  deadline_.expires_after(idle_timeout_);
  deadline_.async_wait([self = shared_from_this()](std::error_code ec) {
    if (ec == asio::error::operation_aborted || self->closed_ || self->held_) return;
    // A wait that completed just before being re-armed: the new deadline stands.
    if (self->deadline_.expiry() > std::chrono::steady_clock::now()) return;
    self->close();
  });
}

void UnixSocketConnection::hold_idle() {
  held_ = true;
  deadline_.cancel();
}

void UnixSocketConnection::close() {
  if (closed_) return;
  auto keep_alive = shared_from_this();
  closed_ = true;
  std::error_code ignored;
  deadline_.cancel();
  socket_.close(ignored);
  if (owner_ != nullptr) {
    auto* owner = owner_;
    owner_ = nullptr;
    owner->forget(this);
  }
}

// ---------------------------------------------------------------- the listening socket

class UnixSocketServer::Core : public UnixSocketConnection::Owner,
                               public std::enable_shared_from_this<Core> {
 public:
  Core(asio::io_context& io, const Options& options, const SessionFactory& make_session)
      : options_(options), make_session_(make_session), acceptor_(io), retry_timer_(io) {}

  void open();
  void accept_next();
  void shutdown();
  void forget(UnixSocketConnection* connection) override { connections_.erase(connection); }
  std::size_t connection_count() const { return connections_.size(); }

 private:
  void on_accept(std::error_code ec, UnixSocketConnection::Socket socket);
  void remove_socket_file();

  Options options_;
  SessionFactory make_session_;
  asio::local::stream_protocol::acceptor acceptor_;
  asio::steady_timer retry_timer_;
  std::unordered_map<UnixSocketConnection*, std::shared_ptr<UnixSocketConnection>> connections_;
  bool stopped_ = false;
  bool bound_ = false;
  dev_t socket_device_ = 0;  // identity of the socket file we bound, so that stop() never
  ino_t socket_inode_ = 0;   // removes one that another process put in its place
};

void UnixSocketServer::Core::open() {
  const std::string& path = options_.path;
  const auto mode = static_cast<mode_t>(options_.socket_mode);
  if (path.empty() || path.size() >= sizeof(sockaddr_un::sun_path))
    throw std::runtime_error(options_.what + " path is empty or too long: " + path);
  ensure_directory(parent_directory(path));

  asio::local::stream_protocol::endpoint endpoint(path);
  std::error_code ec;
  acceptor_.open(endpoint.protocol(), ec);
  if (ec) throw std::runtime_error("cannot create the " + options_.what + ": " + ec.message());
  // Linux gives the bound file the socket inode's mode (minus the umask): no window in which
  // the file is more open than the mode, and no process-wide umask change.
  ::fchmod(acceptor_.native_handle(), mode);

  acceptor_.bind(endpoint, ec);
  if (ec == asio::error::address_in_use) {
    struct stat info {};
    if (::lstat(path.c_str(), &info) == 0 && !S_ISSOCK(info.st_mode))
      throw std::runtime_error(options_.not_a_socket);
    if (socket_is_live(path)) throw std::runtime_error(options_.in_use);
    ::unlink(path.c_str());  // stale, left behind by a process that died
    ec.clear();
    acceptor_.bind(endpoint, ec);
  }
  if (ec) throw std::runtime_error("cannot bind " + path + ": " + ec.message());
  bound_ = true;

  struct stat info {};
  if (::chmod(path.c_str(), mode) != 0 || ::lstat(path.c_str(), &info) != 0) {
    int error = errno;
    remove_socket_file();
    throw std::runtime_error("cannot set up " + path + ": " + errno_message(error));
  }
  socket_device_ = info.st_dev;
  socket_inode_ = info.st_ino;

  acceptor_.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) {
    remove_socket_file();
    throw std::runtime_error("cannot listen on " + path + ": " + ec.message());
  }
}

void UnixSocketServer::Core::accept_next() {
  acceptor_.async_accept([self = shared_from_this()](std::error_code ec, UnixSocketConnection::Socket socket) {
    self->on_accept(ec, std::move(socket));
  });
}

void UnixSocketServer::Core::on_accept(std::error_code ec, UnixSocketConnection::Socket socket) {
  if (stopped_ || ec == asio::error::operation_aborted) return;
  if (ec) {
    // Out of descriptors or memory, or the client gave up: try again shortly, never spin.
    retry_timer_.expires_after(kAcceptRetryDelay);
    retry_timer_.async_wait([self = shared_from_this()](std::error_code wait_ec) {
      if (!wait_ec && !self->stopped_) self->accept_next();
    });
    return;
  }
  if (connections_.size() >= options_.max_connections) {
    std::error_code ignored;
    socket.close(ignored);
  } else {
    auto connection = std::make_shared<UnixSocketConnection>(*this, std::move(socket), options_.idle_timeout);
    connections_.emplace(connection.get(), connection);
    connection->start(make_session_(*connection));
  }
  accept_next();
}

void UnixSocketServer::Core::shutdown() {
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

void UnixSocketServer::Core::remove_socket_file() {
  if (!bound_) return;
  bound_ = false;
  struct stat info {};
  if (::lstat(options_.path.c_str(), &info) != 0) return;
  if (socket_inode_ != 0 && (info.st_dev != socket_device_ || info.st_ino != socket_inode_)) return;
  ::unlink(options_.path.c_str());
}

// ---------------------------------------------------------------- the facade

UnixSocketServer::UnixSocketServer(asio::io_context& io, Options options, SessionFactory make_session)
    : io_(io), options_(std::move(options)), make_session_(std::move(make_session)) {}

UnixSocketServer::~UnixSocketServer() { stop(); }

void UnixSocketServer::start() {
  if (core_) return;
  auto core = std::make_shared<Core>(io_, options_, make_session_);
  core->open();
  core->accept_next();
  core_ = std::move(core);
}

void UnixSocketServer::stop() {
  if (!core_) return;
  core_->shutdown();
  core_.reset();
}

std::size_t UnixSocketServer::connection_count() const { return core_ ? core_->connection_count() : 0; }

}  // namespace knit::net
