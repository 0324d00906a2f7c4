#include "agent/control_server.hpp"

#include <sodium.h>

#include <stdexcept>

namespace knit::agent {

namespace {

constexpr unsigned kSocketMode = 0666;  // anyone may connect; requests are authorized

void wipe(std::string& text) {
  sodium_memzero(text.data(), text.size());
  text.clear();
}

// One CLI client: a line in, the answer out, then the next line.
class ControlSession final : public net::UnixSocketSession {
 public:
  ControlSession(net::UnixSocketConnection& connection, ControlHandler& handler,
                 const ControlServer::Authorizer& authorizer)
      : connection_(connection), handler_(handler), authorizer_(authorizer) {}
  ~ControlSession() override { wipe(input_); }

  void resume() override;
  void take(std::string_view bytes) override { input_.append(bytes); }
  void written() override {
    busy_ = false;
    connection_.arm_idle();
    resume();
  }

 private:
  void dispatch(std::string line);
  void answer(const localapi::ControlResponse& response, bool then_close);

  net::UnixSocketConnection& connection_;  // owns this session
  ControlHandler& handler_;
  const ControlServer::Authorizer& authorizer_;  // the server's; may be empty
  std::string input_;
  bool busy_ = false;  // a request is being answered
};

void ControlSession::resume() {
  if (connection_.closed() || busy_) return;
  const auto newline = input_.find('\n');
  if (newline == std::string::npos) {
    if (input_.size() > localapi::kMaxRequestLine) {
      wipe(input_);
      return answer(localapi::ErrorReply{"bad request: the line is too long"}, /*then_close=*/true);
    }
    return connection_.read();
  }
  std::string line = input_.substr(0, newline);
  sodium_memzero(input_.data(), newline + 1);
  input_.erase(0, newline + 1);
  if (!line.empty() && line.back() == '\r') line.pop_back();
  if (line.find_first_not_of(" \t") == std::string::npos) return resume();  // blank line
  dispatch(std::move(line));
}

void ControlSession::dispatch(std::string line) {
  auto parsed = localapi::parse_request(line);
  wipe(line);  // may hold a join token
  if (auto* error = std::get_if<localapi::ProtocolError>(&parsed)) return answer(localapi::ErrorReply{error->message}, false);
  if (authorizer_) {
    if (auto refused = authorizer_(connection_.credentials(), std::get<localapi::ControlRequest>(parsed)))
      return answer(localapi::ErrorReply{*refused}, false);
  }
  busy_ = true;
  connection_.hold_idle();  // `up` may take a while: the client is waiting, not idle
  std::weak_ptr<net::UnixSocketConnection> weak = connection_.weak_from_this();
  auto replied = std::make_shared<bool>(false);
  ControlHandler::Reply reply = [weak, replied, this](localapi::ControlResponse response) {
    if (*replied) return;
    *replied = true;
    // The connection owns this session: alive while it is.
    if (auto connection = weak.lock(); connection && !connection->closed()) answer(response, false);
  };
  try {
    handler_.handle_request(std::move(std::get<localapi::ControlRequest>(parsed)), reply);
  } catch (const std::exception& e) {
    reply(localapi::ErrorReply{std::string("knitd failed: ") + e.what()});
  }
}

void ControlSession::answer(const localapi::ControlResponse& response, bool then_close) {
  busy_ = true;
  connection_.hold_idle();
  std::string text = localapi::encode_response(response);
  text += '\n';
  if (then_close) return connection_.write_then_close(text);
  connection_.write(text);
}

}  // namespace

ControlServer::ControlServer(asio::io_context& io, std::string path, ControlHandler& handler, Authorizer authorizer)
    : authorizer_(std::move(authorizer)),
      server_(io,
              {.path = path,
               .socket_mode = kSocketMode,
               .max_connections = kMaxConnections,
               .idle_timeout = kIdleTimeout,
               .what = "control socket",
               .not_a_socket = path + " exists and is not a socket: remove it, or pick another --socket",
               .in_use = "another knitd already serves " + path + ": stop it, or pick another --socket"},
              [this, &handler](net::UnixSocketConnection& connection) {
                return std::make_unique<ControlSession>(connection, handler, authorizer_);
              }) {}

}  // namespace knit::agent
