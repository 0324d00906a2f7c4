// A coordinator in miniature for the tests of its clients (knitd's coordinator client and
// membership, the shared coordinator connection): a TCP listener on 127.0.0.1 on the caller's
// Asio loop, the coordinator's end of a session (coordinator_end.hpp) per connection, register
// answered by a policy, then a relay map, a full peer map and one delta; records what clients
// send and answers pings. crash() drops everything at once; listen(port) comes back on the same
// port. Several fakes made with one key play several coordinators of one mesh.
#pragma once

#include <asio.hpp>

#include <array>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "base/random.hpp"
#include "control/messages.hpp"
#include "tests/support/coordinator_end.hpp"
#include "wg/crypto.hpp"

namespace knit::testing {

class FakeCoordinator {
 public:
  using tcp = asio::ip::tcp;

  struct Behaviour {
    bool answer = true;  // false: accept and stay silent
    bool send_maps = true;
    bool pong = true;
    bool hang_up = false;  // close each connection right after answering it
    bool logout = true;    // lists the "logout" feature and answers a logout (false: older)
    std::function<control::RegisterResponse(const control::RegisterRequest&)> respond;
    std::vector<control::PeerInfo> peers = {peer(2), peer(3)};  // the full map, version 1
    std::vector<control::PeerDelta> deltas = {removal(3)};     // then these
  };
  static control::PeerDelta removal(std::uint8_t n) {
    control::PeerDelta delta;
    delta.version = 2;
    delta.removed = {peer(n).node_key};
    return delta;
  }

  FakeCoordinator(asio::io_context& io, Random& rng) : FakeCoordinator(io, rng, wg::crypto::generate_private_key(rng)) {}
  // Another coordinator of the same mesh: the same static key.
  FakeCoordinator(asio::io_context& io, Random& rng, const wg::PrivateKey& key) : io_(io), rng_(rng), key_(key) {
    behaviour.respond = [](const control::RegisterRequest& request) { return accepted(request.hostname); };
    listen(0);
  }

  // Sends a message on every open connection (a delta after the map, say).
  void send_to_all(const control::Message& message) {
    for (const auto& connection : connections_)
      if (!connection->closed) connection->send_message(message);
  }

  const wg::PrivateKey& private_key() const { return key_; }
  wg::PublicKey public_key() const { return wg::crypto::public_key_of(key_); }
  std::uint16_t port() const { return port_; }
  control::HostPort address() const { return {"127.0.0.1", port_}; }

  void listen(std::uint16_t port) {
    acceptor_ = std::make_unique<tcp::acceptor>(io_);
    tcp::endpoint at(asio::ip::make_address("127.0.0.1"), port);
    acceptor_->open(at.protocol());
    acceptor_->set_option(asio::socket_base::reuse_address(true));
    acceptor_->bind(at);
    acceptor_->listen();
    port_ = acceptor_->local_endpoint().port();
    accept();
  }
  // A crash: the listener and every connection go away at once.
  void crash() {
    acceptor_.reset();
    for (auto& c : connections_) c->close();
    connections_.clear();
  }

  Behaviour behaviour;
  std::vector<control::RegisterRequest> registers;
  std::vector<control::Message> received;
  int logouts = 0;

 private:
  struct Connection : std::enable_shared_from_this<Connection> {
    Connection(FakeCoordinator& o, tcp::socket s) : owner(o), socket(std::move(s)), end(o.rng_, o.key_) {}
    void read() {
      socket.async_read_some(asio::buffer(buffer), [self = shared_from_this()](std::error_code ec, std::size_t n) {
        if (ec || self->closed) return;
        ByteSpan input(self->buffer.data(), n);
        while (!input.empty() && !self->closed) {
          auto event = self->end.channel().feed(input);
          if (event.kind == control::ChannelEvent::Kind::need_more) break;
          if (event.kind == control::ChannelEvent::Kind::error) return self->close();
          self->on_event(event);
        }
        if (!self->closed) self->read();
      });
    }
    void on_event(control::ChannelEvent& event) {
      auto parsed = message_of(event);
      if (!parsed) return close();
      if (event.kind == control::ChannelEvent::Kind::request) {
        auto& request = std::get<control::RegisterRequest>(*parsed);
        owner.registers.push_back(request);
        if (!owner.behaviour.answer) return;
        auto response = owner.behaviour.respond(request);
        if (response.ok && owner.behaviour.logout) response.features = {std::string(control::kFeatureLogout)};
        if (response.ok && owner.behaviour.hang_up) return send(end.answer(response), /*then_close=*/true);
        send(end.answer(response));
        if (!response.ok) return;
        if (owner.behaviour.send_maps) {
          send_message(control::RelayMap{});
          send_message(control::PeerMapPage{1, 0, 1, owner.behaviour.peers});
          for (const auto& delta : owner.behaviour.deltas) send_message(delta);
        }
        return;
      }
      owner.received.push_back(*parsed);
      if (std::holds_alternative<control::Logout>(*parsed)) {
        ++owner.logouts;
        if (owner.behaviour.logout)
          send(end.send(control::ErrorMessage{control::ErrorCode::not_registered, "this node logged out"}), true);
        else
          close();  // an older coordinator: a type it does not know
        return;
      }
      if (auto* ping = std::get_if<control::Ping>(&*parsed); ping && owner.behaviour.pong)
        send_message(control::Pong{ping->seq});
    }
    void send_message(const control::Message& message) { send(end.send(message)); }
    void send(Bytes frame, bool then_close = false) {
      auto data = std::make_shared<Bytes>(std::move(frame));
      asio::async_write(socket, asio::buffer(*data),
                        [data, then_close, self = shared_from_this()](std::error_code, std::size_t) {
                          if (then_close) self->close();
                        });
    }
    void close() {
      closed = true;
      std::error_code ignored;
      socket.close(ignored);
    }
    FakeCoordinator& owner;
    tcp::socket socket;
    CoordinatorEnd end;
    std::array<std::uint8_t, 65536> buffer{};
    bool closed = false;
  };

  void accept() {
    acceptor_->async_accept([this](std::error_code ec, tcp::socket socket) {
      if (ec) return;
      auto connection = std::make_shared<Connection>(*this, std::move(socket));
      connections_.push_back(connection);
      connection->read();
      accept();
    });
  }

  asio::io_context& io_;
  Random& rng_;
  wg::PrivateKey key_;
  std::unique_ptr<tcp::acceptor> acceptor_;
  std::uint16_t port_ = 0;
  std::vector<std::shared_ptr<Connection>> connections_;
};

}  // namespace knit::testing
