// knitd's home relay: which relay of the mesh this node homes on, and the link to it
// (relay::RelayClient). Every peer is reachable through it from the moment the link is up.
//
// The choice: the relay with the lowest STUN round trip of the last netcheck, the current one
// keeping its place unless another is clearly nearer (hysteresis); an unmeasured relay comes
// after every measured one. A new relay map keeps the current home while it is listed, else
// takes the first relay at once so peers are reachable before any measurement. While the link
// stays down for kFailover, another relay is chosen.
#pragma once

#include <asio.hpp>

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>

#include "agent/mesh_transport.hpp"
#include "base/random.hpp"
#include "control/messages.hpp"
#include "net/deadline_timer.hpp"
#include "relay/relay_client.hpp"

namespace knit::agent {

class HomeRelay final : public MeshTransport::RelayLink {
 public:
  static constexpr std::chrono::seconds kFailover{4};
  using PacketHandler = std::function<void(const wg::PublicKey& from, MutableByteSpan packet)>;
  using StateHandler = std::function<void(bool connected)>;
  using BatchEndHandler = std::function<void()>;

  // split_data: offer the relay split data frames (relay::RelayClient::Options).
  HomeRelay(asio::io_context& io, const wg::PrivateKey& node_key, Random& rng, bool split_data = true,
            bool data_runs = true);
  ~HomeRelay() override;
  HomeRelay(const HomeRelay&) = delete;
  HomeRelay& operator=(const HomeRelay&) = delete;

  // Where packets from the relay and changes of the link go (the mesh transport).
  // on_batch_end follows the packets of each read (relay::RelayClient::on_batch_end).
  void set_handlers(PacketHandler on_packet, StateHandler on_state, BatchEndHandler on_batch_end = {});
  void set_relays(const control::RelayMap& relays);
  // A netcheck measured these round trips (relay name -> ms): home on the nearest.
  void choose(const std::map<std::string, std::uint32_t>& latency_ms);
  // Closes the link; nothing is called after this.
  void stop();

  const std::string& name() const { return home_; }
  const relay::RelayClient& client() const { return client_; }

  // MeshTransport::RelayLink
  bool connected() const override { return client_.connected(); }
  bool send(const wg::PublicKey& to, ByteSpan packet) override { return client_.send(to, packet); }

 private:
  void choose_now(bool avoid_current);
  void home_on(const control::RelayInfo& relay);
  void on_link_state(bool up, const std::string& detail);

  relay::RelayClient client_;
  control::RelayMap relays_;
  std::map<std::string, std::uint32_t> latency_ms_;
  std::string home_;
  net::DeadlineTimer failover_;
  PacketHandler on_packet_;
  StateHandler on_state_;
  BatchEndHandler on_batch_end_;
};

}  // namespace knit::agent
