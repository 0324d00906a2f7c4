#include "agent/uapi_server.hpp"

#include <sodium.h>

#include <exception>
#include <stdexcept>
#include <utility>

namespace knit::agent {

namespace {

constexpr unsigned kSocketMode = 0700;  // wireguard-go: bind under umask 0077
// Stop turning parsed requests into answers while this much output waits to be written, so a
// burst of pipelined gets cannot make the answer buffer grow without bound.
constexpr std::size_t kOutputHighWater = 64 * 1024;

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

// One client: reads requests, answers them in order, one write at a time.
class UapiSession final : public net::UnixSocketSession {
 public:
  UapiSession(net::UnixSocketConnection& connection, UapiHandler& handler,
              std::shared_ptr<detail::UapiServerCounters> counters)
      : connection_(connection), handler_(handler), counters_(std::move(counters)) {}
  ~UapiSession() override { sodium_memzero(output_.data(), output_.size()); }

  void resume() override;
  void take(std::string_view bytes) override { parser_.feed(bytes); }
  void written() override { resume(); }

 private:
  void answer(wg::UapiParser::Event& event);

  net::UnixSocketConnection& connection_;  // owns this session
  UapiHandler& handler_;
  std::shared_ptr<detail::UapiServerCounters> counters_;
  wg::UapiParser parser_;
  std::string output_;
};

void UapiSession::resume() {
  while (!connection_.closed() && output_.size() < kOutputHighWater) {
    auto event = parser_.next();
    if (std::holds_alternative<wg::UapiParser::NeedMore>(event)) break;
    answer(event);
    connection_.arm_idle();  // a completed request: the client is not idle
  }
  // The handler may have stopped the server.
  if (connection_.closed()) return;
  if (!output_.empty()) {
    connection_.write(output_);
  } else if (parser_.fatal()) {
    connection_.close();
  } else {
    connection_.read();
  }
}

void UapiSession::answer(wg::UapiParser::Event& event) {
  std::string text;
  if (std::holds_alternative<wg::UapiParser::Get>(event)) {
    try {
      text = wg::format_get(handler_.uapi_get());
    } catch (const std::exception&) {
      text = wg::format_errno(wg::kUapiErrorIo);
    }
  } else if (auto* set = std::get_if<wg::UapiParser::Set>(&event)) {
    int result = wg::kUapiErrorIo;
    try {
      result = handler_.uapi_set(set->request);
    } catch (const std::exception&) {
      result = wg::kUapiErrorIo;
    }
    text = wg::format_errno(result);
  } else if (auto* error = std::get_if<wg::UapiParser::Error>(&event)) {
    ++counters_->malformed;
    text = wg::format_errno(error->errno_value);
  }
  append_wiped(output_, text);
}

}  // namespace

std::string UapiServer::socket_path_for(std::string_view interface_name) {
  if (interface_name.empty() || interface_name.find('/') != std::string_view::npos)
    throw std::invalid_argument("invalid interface name: " + std::string(interface_name));
  return "/var/run/wireguard/" + std::string(interface_name) + ".sock";
}

UapiServer::UapiServer(asio::io_context& io, std::string path, UapiHandler& handler)
    : server_(io,
              {.path = path,
               .socket_mode = kSocketMode,
               .max_connections = kMaxConnections,
               .idle_timeout = kIdleTimeout,
               .what = "UAPI socket",
               .not_a_socket = path + " exists and is not a socket",
               .in_use = "another process is already serving " + path},
              [&handler, counters = counters_](net::UnixSocketConnection& connection) {
                return std::make_unique<UapiSession>(connection, handler, counters);
              }) {}

}  // namespace knit::agent
