// knitd's link to its home relay: MeshPaths' RelayLink over relay::RelayClient. Packets and
// state changes from the relay go to the handlers MeshPaths installs.
#pragma once

#include <asio.hpp>

#include <functional>
#include <optional>
#include <string>

#include "agent/mesh_paths.hpp"
#include "relay/relay_client.hpp"

namespace knit::agent {

class HomeRelayLink final : public RelayLink {
 public:
  HomeRelayLink(asio::io_context& io, const wg::PrivateKey& node_key, Random& rng);

  // Where packets and state changes go (MeshPaths::on_relay_packet / on_relay_state).
  void set_handlers(std::function<void(const wg::PublicKey&, ByteSpan)> on_packet,
                    std::function<void(bool)> on_state);

  void set_relay(const std::optional<control::RelayInfo>& relay) override;
  bool connected() const override { return client_.connected(); }
  bool send(const wg::PublicKey& to, ByteSpan packet) override { return client_.send(to, packet); }

  const relay::RelayClient& client() const { return client_; }
  const std::optional<control::RelayInfo>& relay() const { return relay_; }

 private:
  relay::RelayClient client_;
  std::optional<control::RelayInfo> relay_;
  std::function<void(const wg::PublicKey&, ByteSpan)> on_packet_;
  std::function<void(bool)> on_state_;
};

}  // namespace knit::agent
