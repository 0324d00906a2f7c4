// The /metrics HTTP endpoint: the request check, and the responder on loopback (good scrapes,
// bad requests, oversize heads, slow clients).
#include <gtest/gtest.h>

#include <asio.hpp>

#include <chrono>
#include <future>
#include <string>
#include <thread>

#include "base/metrics.hpp"
#include "net/metrics_http.hpp"
#include "net/metrics_server.hpp"

using namespace knit::metrics;
using namespace knit::net;
using namespace std::chrono_literals;

// ---- request check (numbered table) ----

struct RequestCase {
  int number;
  std::string text;
  RequestCheck want;
};

TEST(MetricsRequest, Table) {
  const std::size_t kMax = 256;
  const RequestCase cases[] = {
      {1, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n", RequestCheck::metrics},
      {2, "GET /metrics HTTP/1.0\r\n\r\n", RequestCheck::metrics},
      {3, "GET /metrics?name[]=x HTTP/1.1\r\n\r\n", RequestCheck::metrics},
      {4, "GET /metrics HTTP/1.1\nHost: x\n\n", RequestCheck::metrics},  // bare LF
      {5, "HEAD /metrics HTTP/1.1\r\n\r\n", RequestCheck::metrics_head},
      {6, "GET / HTTP/1.1\r\n\r\n", RequestCheck::not_found},
      {7, "GET /metricsx HTTP/1.1\r\n\r\n", RequestCheck::not_found},
      {8, "POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n", RequestCheck::method_not_allowed},
      {9, "GET /metrics HTTP/1.1\r\nContent-Length: 5\r\n\r\n", RequestCheck::bad_request},
      {10, "GET /metrics HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", RequestCheck::bad_request},
      {11, "GET /metrics HTTP/2.0\r\n\r\n", RequestCheck::bad_request},
      {12, "GET  /metrics HTTP/1.1\r\n\r\n", RequestCheck::bad_request},
      {13, "GET /metrics\r\n\r\n", RequestCheck::bad_request},  // HTTP/0.9
      {14, "GET /metrics HTTP/1.1\r\nNoColon\r\n\r\n", RequestCheck::bad_request},
      {15, "GET /metrics HTTP/1.1\r\nBad Name: x\r\n\r\n", RequestCheck::bad_request},
      {16, std::string("GET /metrics HTTP/1.1\r\nX: a") + '\0' + "b\r\n\r\n", RequestCheck::bad_request},
      {17, "\r\n\r\n", RequestCheck::bad_request},
      {18, "GET /metrics HTTP/1.1\r\nHost: x\r\n", RequestCheck::incomplete},
      {19, "GET /met", RequestCheck::incomplete},
      {20, "", RequestCheck::incomplete},
      {21, "GET /metrics HTTP/1.1\r\nX: " + std::string(300, 'a'), RequestCheck::too_large},
      {22, "GET /metrics HTTP/1.1\r\nX: " + std::string(300, 'a') + "\r\n\r\n",
       RequestCheck::too_large},
  };
  for (const auto& c : cases)
    EXPECT_EQ(check_request(c.text, kMax), c.want) << "case " << c.number;
}

TEST(MetricsRequest, ResponsesCarryLengthTypeAndClose) {
  const std::string ok = make_response(RequestCheck::metrics, "a 1\n");
  EXPECT_EQ(ok,
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n"
            "Content-Length: 4\r\nConnection: close\r\n\r\na 1\n");
  const std::string head = make_response(RequestCheck::metrics_head, "a 1\n");
  EXPECT_NE(head.find("Content-Length: 4\r\n"), std::string::npos);
  EXPECT_TRUE(head.ends_with("\r\n\r\n"));
  EXPECT_TRUE(make_response(RequestCheck::not_found, "").starts_with("HTTP/1.1 404 "));
  EXPECT_NE(make_response(RequestCheck::method_not_allowed, "").find("Allow: GET, HEAD"),
            std::string::npos);
  EXPECT_TRUE(make_response(RequestCheck::too_large, "").starts_with("HTTP/1.1 431 "));
  EXPECT_TRUE(make_response(RequestCheck::bad_request, "secret").starts_with("HTTP/1.1 400 "));
  EXPECT_EQ(make_response(RequestCheck::bad_request, "secret").find("secret"), std::string::npos);
}

TEST(MetricsListen, ParsesAddressesOnly) {
  auto v4 = parse_listen_address("127.0.0.1:9100");
  ASSERT_TRUE(v4);
  EXPECT_EQ(v4->port(), 9100);
  EXPECT_TRUE(v4->address().is_loopback());
  auto v6 = parse_listen_address("[::1]:9101");
  ASSERT_TRUE(v6);
  EXPECT_TRUE(v6->address().is_v6());
  auto local = parse_listen_address("localhost:9102");
  ASSERT_TRUE(local);
  EXPECT_EQ(local->address().to_string(), "127.0.0.1");
  EXPECT_FALSE(parse_listen_address("example.com:9100"));
  EXPECT_FALSE(parse_listen_address("127.0.0.1"));
  EXPECT_FALSE(parse_listen_address("127.0.0.1:99999"));
  EXPECT_FALSE(parse_listen_address(""));
}

// ---- the responder on loopback ----

// A server on 127.0.0.1:<ephemeral> with its loop on a thread; the test is a blocking client.
class MetricsServerTest : public ::testing::Test {
 protected:
  void start(ServerLimits limits) {
    registry_.counter("test_scrapes_total", "Scrapes seen by the render callback.");
    server_ = std::make_unique<MetricsServer>(
        io_, asio::ip::tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0),
        [this] {
          registry_.counter("test_scrapes_total", "").inc();
          return registry_.render();
        },
        limits);
    server_->start();
    port_ = server_->local_endpoint().port();
    thread_ = std::thread([this] { io_.run(); });
  }

  void TearDown() override {
    if (server_) asio::post(io_, [this] { server_->stop(); });
    if (thread_.joinable()) thread_.join();
  }

  asio::ip::tcp::socket connect() {
    asio::ip::tcp::socket s(client_io_);
    s.connect(asio::ip::tcp::endpoint(asio::ip::make_address("127.0.0.1"), port_));
    return s;
  }

  // Everything the server sends until it closes.
  static std::string read_all(asio::ip::tcp::socket& s) {
    std::string out;
    std::error_code ec;
    char buffer[4096];
    for (;;) {
      const std::size_t n = s.read_some(asio::buffer(buffer), ec);
      out.append(buffer, n);
      if (ec) break;
    }
    return out;
  }

  std::string exchange(std::string_view request) {
    auto s = connect();
    asio::write(s, asio::buffer(request));
    return read_all(s);
  }

  // Reads a counter on the server's loop.
  template <typename F>
  auto on_loop(F f) {
    std::promise<decltype(f())> result;
    asio::post(io_, [&] { result.set_value(f()); });
    return result.get_future().get();
  }

  asio::io_context io_;
  asio::io_context client_io_;
  Registry registry_;
  std::unique_ptr<MetricsServer> server_;
  std::uint16_t port_ = 0;
  std::thread thread_;
};

TEST_F(MetricsServerTest, ServesMetricsThenCloses) {
  start({});
  const std::string first = exchange("GET /metrics HTTP/1.1\r\nHost: t\r\n\r\n");
  EXPECT_TRUE(first.starts_with("HTTP/1.1 200 OK\r\n")) << first;
  EXPECT_NE(first.find("Content-Type: text/plain; version=0.0.4"), std::string::npos);
  EXPECT_NE(first.find("\r\n\r\n# HELP test_scrapes_total "), std::string::npos);
  EXPECT_TRUE(first.ends_with("test_scrapes_total 1\n")) << first;
  // The body is exactly Content-Length long.
  const std::size_t body = first.find("\r\n\r\n") + 4;
  EXPECT_NE(first.find("Content-Length: " + std::to_string(first.size() - body)), std::string::npos);
  EXPECT_TRUE(exchange("GET /metrics HTTP/1.0\r\n\r\n").ends_with("test_scrapes_total 2\n"));
  EXPECT_EQ(on_loop([&] { return server_->counters().scrapes; }), 2u);
}

TEST_F(MetricsServerTest, RequestInPiecesIsStillOneRequest) {
  start({});
  auto s = connect();
  asio::write(s, asio::buffer(std::string_view("GET /met")));
  std::this_thread::sleep_for(20ms);
  asio::write(s, asio::buffer(std::string_view("rics HTTP/1.1\r\n")));
  std::this_thread::sleep_for(20ms);
  asio::write(s, asio::buffer(std::string_view("\r\n")));
  EXPECT_TRUE(read_all(s).starts_with("HTTP/1.1 200 OK\r\n"));
}

TEST_F(MetricsServerTest, BadRequestsGetErrorsAndNoRender) {
  start({});
  EXPECT_TRUE(exchange("GET / HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 404 "));
  EXPECT_TRUE(exchange("DELETE /metrics HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 405 "));
  EXPECT_TRUE(exchange("hello\r\n\r\n").starts_with("HTTP/1.1 400 "));
  EXPECT_TRUE(exchange(std::string("\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n", 15))
                  .starts_with("HTTP/1.1 400 "));  // a TLS ClientHello
  EXPECT_EQ(on_loop([&] { return server_->counters().bad_requests; }), 4u);
  EXPECT_EQ(on_loop([&] { return server_->counters().scrapes; }), 0u);
  EXPECT_EQ(on_loop([&] { return registry_.counter("test_scrapes_total", "").value(); }), 0u);
}

TEST_F(MetricsServerTest, OversizeHeadIsRefused) {
  ServerLimits limits;
  limits.max_head = 1024;
  start(limits);
  auto s = connect();
  std::string request = "GET /metrics HTTP/1.1\r\n";
  while (request.size() < 64 * 1024) request += "X-Padding: " + std::string(100, 'p') + "\r\n";
  std::error_code ec;
  asio::write(s, asio::buffer(request), ec);  // may fail half way: the server closes early
  const std::string answer = read_all(s);
  EXPECT_TRUE(answer.empty() || answer.starts_with("HTTP/1.1 431 ")) << answer;
  EXPECT_EQ(on_loop([&] { return server_->counters().bad_requests; }), 1u);
}

TEST_F(MetricsServerTest, SlowClientIsCutOffAtTheDeadline) {
  ServerLimits limits;
  limits.deadline = 300ms;
  start(limits);
  auto s = connect();
  const auto begin = std::chrono::steady_clock::now();
  // Trickle a byte every 50 ms: each read is progress, but the deadline counts from accept.
  std::error_code ec;
  const std::string_view trickle = "GET /metrics HTTP/1.1\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaa";
  for (char c : trickle) {
    asio::write(s, asio::buffer(&c, 1), ec);
    if (ec) break;
    std::this_thread::sleep_for(50ms);
  }
  const std::string answer = read_all(s);
  const auto took = std::chrono::steady_clock::now() - begin;
  EXPECT_TRUE(answer.empty()) << answer;
  EXPECT_LT(took, 5s);
  EXPECT_EQ(on_loop([&] { return server_->counters().timeouts; }), 1u);
  EXPECT_EQ(on_loop([&] { return server_->connection_count(); }), 0u);
}

TEST_F(MetricsServerTest, ConnectionsOverTheLimitAreClosed) {
  ServerLimits limits;
  limits.max_connections = 2;
  start(limits);
  auto a = connect();
  auto b = connect();
  // Both held open (no request yet): wait until the server has them.
  for (int i = 0; i < 1000 && on_loop([&] { return server_->connection_count(); }) < 2; ++i)
    std::this_thread::sleep_for(5ms);
  ASSERT_EQ(on_loop([&] { return server_->connection_count(); }), 2u);
  auto c = connect();
  EXPECT_TRUE(read_all(c).empty());  // closed without an answer
  EXPECT_EQ(on_loop([&] { return server_->counters().refused; }), 1u);
  // The held ones still work.
  asio::write(a, asio::buffer(std::string_view("GET /metrics HTTP/1.1\r\n\r\n")));
  EXPECT_TRUE(read_all(a).starts_with("HTTP/1.1 200 OK"));
}

TEST_F(MetricsServerTest, StopClosesOpenConnections) {
  start({});
  auto s = connect();
  for (int i = 0; i < 1000 && on_loop([&] { return server_->connection_count(); }) < 1; ++i)
    std::this_thread::sleep_for(5ms);
  asio::post(io_, [this] { server_->stop(); });
  EXPECT_TRUE(read_all(s).empty());
  thread_.join();  // run() returned: nothing of the server is left on the loop
  EXPECT_EQ(server_->connection_count(), 0u);
}
