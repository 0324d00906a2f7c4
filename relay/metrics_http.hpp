// A minimal HTTP/1.0 responder for Prometheus scrapes (knit-relay --metrics HOST:PORT): any GET
// gets the current metrics text, then the connection closes. It reads at most 4 KiB of request
// within 5 s and serves at most 16 scrapers at once; it is meant for a private address.
#pragma once

#include <asio.hpp>

#include <cstddef>
#include <functional>
#include <memory>
#include <string>

namespace knit::relay {

class MetricsHttp {
 public:
  using Body = std::function<std::string()>;

  MetricsHttp(asio::io_context& io, asio::ip::tcp::endpoint listen, Body body);
  ~MetricsHttp();
  MetricsHttp(const MetricsHttp&) = delete;
  MetricsHttp& operator=(const MetricsHttp&) = delete;

  // Throws std::system_error when the address cannot be bound.
  void start();
  void stop();
  asio::ip::tcp::endpoint local_endpoint() const;

  class Exchange;

 private:
  void accept_next();

  asio::io_context& io_;
  asio::ip::tcp::endpoint listen_;
  Body body_;
  asio::ip::tcp::acceptor acceptor_;
  std::shared_ptr<std::size_t> active_;
  bool stopped_ = false;
};

}  // namespace knit::relay
