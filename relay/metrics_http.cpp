#include "relay/metrics_http.hpp"

#include <string_view>

namespace knit::relay {
namespace {

constexpr std::size_t kMaxRequest = 4096;
constexpr std::size_t kMaxActive = 16;
constexpr auto kRequestTimeout = std::chrono::seconds(5);

}  // namespace

// One scrape: read the request head, answer, close.
class MetricsHttp::Exchange : public std::enable_shared_from_this<Exchange> {
 public:
  Exchange(asio::ip::tcp::socket socket, MetricsHttp::Body body,
           std::shared_ptr<std::size_t> active)
      : socket_(std::move(socket)),
        timer_(socket_.get_executor()),
        body_(std::move(body)),
        active_(std::move(active)) {
    ++*active_;
  }
  ~Exchange() { --*active_; }

  void start() {
    timer_.expires_after(kRequestTimeout);
    timer_.async_wait([self = shared_from_this()](std::error_code ec) {
      if (!ec) self->close();
    });
    read();
  }

 private:
  void read() {
    socket_.async_read_some(asio::buffer(chunk_), [self = shared_from_this()](std::error_code ec,
                                                                                std::size_t n) {
      if (ec) return self->close();
      self->request_.append(self->chunk_.data(), n);
      if (self->request_.find("\r\n\r\n") != std::string::npos ||
          self->request_.find("\n\n") != std::string::npos)
        return self->answer();
      if (self->request_.size() >= kMaxRequest) return self->close();
      self->read();
    });
  }

  void answer() {
    const bool get = std::string_view(request_).substr(0, 4) == "GET ";
    const std::string body = get ? body_() : "only GET\n";
    response_ = std::string(get ? "HTTP/1.0 200 OK\r\n" : "HTTP/1.0 405 Method Not Allowed\r\n") +
                "Content-Type: text/plain; version=0.0.4; charset=utf-8\r\n"
                "Content-Length: " + std::to_string(body.size()) +
                "\r\nConnection: close\r\n\r\n" + body;
    asio::async_write(socket_, asio::buffer(response_),
                      [self = shared_from_this()](std::error_code, std::size_t) { self->close(); });
  }

  void close() {
    std::error_code ignored;
    timer_.cancel();
    socket_.shutdown(asio::ip::tcp::socket::shutdown_both, ignored);
    socket_.close(ignored);
  }

  asio::ip::tcp::socket socket_;
  asio::steady_timer timer_;
  MetricsHttp::Body body_;
  std::shared_ptr<std::size_t> active_;
  std::array<char, 1024> chunk_{};
  std::string request_;
  std::string response_;
};

MetricsHttp::MetricsHttp(asio::io_context& io, asio::ip::tcp::endpoint listen, Body body)
    : io_(io),
      listen_(listen),
      body_(std::move(body)),
      acceptor_(io),
      active_(std::make_shared<std::size_t>(0)) {}

MetricsHttp::~MetricsHttp() { stop(); }

void MetricsHttp::start() {
  acceptor_.open(listen_.protocol());
  acceptor_.set_option(asio::ip::tcp::acceptor::reuse_address(true));
  acceptor_.bind(listen_);
  acceptor_.listen();
  accept_next();
}

void MetricsHttp::stop() {
  stopped_ = true;
  std::error_code ignored;
  acceptor_.close(ignored);
}

asio::ip::tcp::endpoint MetricsHttp::local_endpoint() const {
  std::error_code ec;
  return acceptor_.local_endpoint(ec);
}

void MetricsHttp::accept_next() {
  acceptor_.async_accept([this](std::error_code ec, asio::ip::tcp::socket socket) {
    if (ec == asio::error::operation_aborted || stopped_) return;
    if (!ec && *active_ < kMaxActive)
      std::make_shared<Exchange>(std::move(socket), body_, active_)->start();
    accept_next();
  });
}

}  // namespace knit::relay
