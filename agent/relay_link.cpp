#include "agent/relay_link.hpp"

#include "base/log.hpp"

namespace knit::agent {

HomeRelayLink::HomeRelayLink(asio::io_context& io, const wg::PrivateKey& node_key, Random& rng)
    : client_(io, node_key, rng) {
  client_.on_packet([this](const relay::NodeKey& src, ByteSpan packet) {
    if (on_packet_) on_packet_(src, packet);
  });
  client_.on_state([this](bool up, const std::string& detail) {
    log(up ? LogLevel::info : LogLevel::warn, "relay",
        relay_ ? relay_->name : std::string("relay"), up ? " connected (" : " down (", detail, ")");
    if (on_state_) on_state_(up);
  });
}

void HomeRelayLink::set_handlers(std::function<void(const wg::PublicKey&, ByteSpan)> on_packet,
                                 std::function<void(bool)> on_state) {
  on_packet_ = std::move(on_packet);
  on_state_ = std::move(on_state);
}

void HomeRelayLink::set_relay(const std::optional<control::RelayInfo>& relay) {
  if (relay == relay_) return;
  relay_ = relay;
  if (!relay) {
    client_.close();
    if (on_state_) on_state_(false);
    return;
  }
  std::vector<std::string> addresses;
  for (const auto& address : relay->addresses) addresses.push_back(address.to_string());
  client_.connect(std::move(addresses), relay->node_key);
}

}  // namespace knit::agent
