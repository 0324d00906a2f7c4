#include "net/metrics_server.hpp"

#include <unordered_set>
#include <utility>

#include "base/ip.hpp"
#include "base/log.hpp"
#include "base/socket_mark.hpp"
#include "net/metrics_http.hpp"

namespace knit::net {

namespace {
constexpr std::string_view kLog = "metrics";
}

std::optional<asio::ip::tcp::endpoint> parse_listen_address(std::string_view text) {
  constexpr std::string_view kLocalhost = "localhost:";
  std::string literal(text);
  if (text.starts_with(kLocalhost)) literal = "127.0.0.1:" + std::string(text.substr(kLocalhost.size()));
  const auto endpoint = Endpoint::parse(literal);
  if (!endpoint) return std::nullopt;
  std::error_code ec;
  const auto address = asio::ip::make_address(endpoint->address().to_string(), ec);
  if (ec) return std::nullopt;
  return asio::ip::tcp::endpoint(address, endpoint->port());
}

// The connections and the acceptor. Handlers hold the core (or a connection) by shared_ptr, so
// one that runs after stop() finds the socket closed and returns.
class MetricsServer::Core : public std::enable_shared_from_this<Core> {
 public:
  class Connection;

  Core(asio::io_context& io, asio::ip::tcp::endpoint listen, Render render, ServerLimits limits)
      : io_(io), listen_(listen), render_(std::move(render)), limits_(limits), acceptor_(io) {}

  void start() {
    acceptor_.open(listen_.protocol());
    // Accepted connections inherit the mark: a scraper on the LAN gets its answers directly
    // while an exit node carries knitd's default route (base/socket_mark.hpp; 0 elsewhere).
    mark_underlay_socket(acceptor_.native_handle());
    acceptor_.set_option(asio::ip::tcp::acceptor::reuse_address(true));
    if (listen_.address().is_v6()) acceptor_.set_option(asio::ip::v6_only(true));
    acceptor_.bind(listen_);
    acceptor_.listen(static_cast<int>(limits_.max_connections));
    accept_next();
  }

  void stop();
  void accept_next();
  void forget(Connection* connection) { connections_.erase(connection); }

  asio::io_context& io_;
  asio::ip::tcp::endpoint listen_;
  Render render_;
  ServerLimits limits_;
  asio::ip::tcp::acceptor acceptor_;
  ServerCounters counters_;
  std::unordered_set<Connection*> connections_;
  bool stopped_ = false;
};

// One request, one answer, then close; everything within one deadline.
class MetricsServer::Core::Connection : public std::enable_shared_from_this<Connection> {
 public:
  Connection(std::shared_ptr<Core> core, asio::ip::tcp::socket socket)
      : core_(std::move(core)), socket_(std::move(socket)), deadline_(core_->io_) {
    received_.reserve(core_->limits_.max_head);
  }

  void start() {
    deadline_.expires_after(core_->limits_.deadline);
    deadline_.async_wait([self = shared_from_this()](std::error_code ec) {
      if (ec || self->closed_) return;
      ++self->core_->counters_.timeouts;
      self->close();
    });
    read_more();
  }

  void close() {
    if (closed_) return;
    closed_ = true;
    std::error_code ignored;
    socket_.shutdown(asio::ip::tcp::socket::shutdown_both, ignored);
    socket_.close(ignored);
    deadline_.cancel();
    core_->forget(this);
  }

 private:
  void read_more() {
    // Never more than the bound in the buffer: one byte past it is enough to say "too large".
    const std::size_t room = core_->limits_.max_head + 1 - received_.size();
    chunk_.resize(std::min<std::size_t>(room, 2048));
    socket_.async_read_some(asio::buffer(chunk_), [self = shared_from_this()](
                                                      std::error_code ec, std::size_t n) {
      self->on_read(ec, n);
    });
  }

  void on_read(std::error_code ec, std::size_t n) {
    if (closed_) return;
    if (ec) {  // eof before a whole head, a reset, or operation_aborted at stop
      close();
      return;
    }
    received_.append(chunk_.data(), n);
    const RequestCheck check = check_request(received_, core_->limits_.max_head);
    if (check == RequestCheck::incomplete) {
      read_more();
      return;
    }
    std::string body;
    if (check == RequestCheck::metrics || check == RequestCheck::metrics_head) {
      ++core_->counters_.scrapes;
      body = core_->render_();
    } else {
      ++core_->counters_.bad_requests;
      log(LogLevel::debug, kLog, "refused a request (", static_cast<int>(check), ")");
    }
    answer_ = make_response(check, body);
    asio::async_write(socket_, asio::buffer(answer_),
                      [self = shared_from_this()](std::error_code, std::size_t) { self->close(); });
  }

  std::shared_ptr<Core> core_;
  asio::ip::tcp::socket socket_;
  asio::steady_timer deadline_;
  std::string received_;
  std::string chunk_;
  std::string answer_;
  bool closed_ = false;
};

void MetricsServer::Core::accept_next() {
  acceptor_.async_accept([self = shared_from_this()](std::error_code ec,
                                                     asio::ip::tcp::socket socket) {
    if (self->stopped_) return;
    if (ec) {
      if (ec == asio::error::operation_aborted) return;
      // EMFILE and the like: try again on the next turn rather than spinning inside accept.
      log(LogLevel::warn, kLog, "accept: ", ec.message());
      asio::post(self->io_, [self] {
        if (!self->stopped_) self->accept_next();
      });
      return;
    }
    if (self->connections_.size() >= self->limits_.max_connections) {
      ++self->counters_.refused;
      std::error_code ignored;
      socket.close(ignored);
    } else {
      auto connection = std::make_shared<Connection>(self, std::move(socket));
      self->connections_.insert(connection.get());
      connection->start();
    }
    self->accept_next();
  });
}

void MetricsServer::Core::stop() {
  if (stopped_) return;
  stopped_ = true;
  std::error_code ignored;
  acceptor_.close(ignored);
  // close() erases from the set: close a copy.
  const auto open = connections_;
  for (Connection* c : open) c->close();
}

MetricsServer::MetricsServer(asio::io_context& io, asio::ip::tcp::endpoint listen, Render render,
                             ServerLimits limits)
    : core_(std::make_shared<Core>(io, listen, std::move(render), limits)) {}

MetricsServer::~MetricsServer() { stop(); }

void MetricsServer::start() {
  core_->start();
  log(LogLevel::info, kLog, "serving /metrics on ", local_endpoint().address().to_string(), ":",
      local_endpoint().port());
}

void MetricsServer::stop() { core_->stop(); }

asio::ip::tcp::endpoint MetricsServer::local_endpoint() const {
  std::error_code ec;
  return core_->acceptor_.local_endpoint(ec);
}

const ServerCounters& MetricsServer::counters() const { return core_->counters_; }

std::size_t MetricsServer::connection_count() const { return core_->connections_.size(); }

}  // namespace knit::net
