#include "agent/home_relay.hpp"

#include <algorithm>

#include "base/log.hpp"

namespace knit::agent {

namespace {
constexpr const char* kLog = "relay";
constexpr std::uint32_t kUnmeasuredMs = 60'000;
}  // namespace

namespace {
relay::RelayClient::Options client_options(bool split_data, bool data_runs) {
  relay::RelayClient::Options options;
  options.split_data = split_data;
  options.data_runs = data_runs;
  return options;
}
}  // namespace

HomeRelay::HomeRelay(asio::io_context& io, const wg::PrivateKey& node_key, Random& rng, bool split_data,
                     bool data_runs)
    : client_(io, node_key, rng, client_options(split_data, data_runs)), failover_(io, [this] {
        if (relays_.relays.size() < 2 || client_.connected()) return;
        log(LogLevel::warn, kLog, "home relay ", home_, " unreachable for ", kFailover.count(),
            " s: choosing another");
        choose_now(true);
      }) {
  client_.on_packet([this](const relay::NodeKey& src, MutableByteSpan packet) {
    if (on_packet_) on_packet_(src, packet);
  });
  client_.on_state([this](bool up, const std::string& detail) { on_link_state(up, detail); });
  client_.on_batch_end([this] {
    if (on_batch_end_) on_batch_end_();
  });
}

HomeRelay::~HomeRelay() { stop(); }

void HomeRelay::set_handlers(PacketHandler on_packet, StateHandler on_state, BatchEndHandler on_batch_end) {
  on_packet_ = std::move(on_packet);
  on_state_ = std::move(on_state);
  on_batch_end_ = std::move(on_batch_end);
}

void HomeRelay::stop() {
  failover_.cancel();
  on_packet_ = nullptr;
  on_state_ = nullptr;
  on_batch_end_ = nullptr;
  client_.close();
  home_.clear();
}

void HomeRelay::set_relays(const control::RelayMap& relays) {
  if (relays == relays_) return;
  relays_ = relays;
  if (relays_.relays.empty()) {
    home_.clear();
    failover_.cancel();
    client_.close();
    if (on_state_) on_state_(false);
    return;
  }
  const bool still_listed = std::any_of(relays_.relays.begin(), relays_.relays.end(),
                                        [&](const auto& r) { return r.name == home_; });
  if (!still_listed) choose_now(false);
}

void HomeRelay::choose(const std::map<std::string, std::uint32_t>& latency_ms) {
  latency_ms_ = latency_ms;
  choose_now(false);
}

void HomeRelay::choose_now(bool avoid_current) {
  const control::RelayInfo* best = nullptr;
  std::uint32_t best_ms = 0;
  for (const auto& relay : relays_.relays) {
    if (avoid_current && relay.name == home_) continue;
    std::uint32_t ms = kUnmeasuredMs;
    if (auto it = latency_ms_.find(relay.name); it != latency_ms_.end()) ms = it->second;
    // Hysteresis: the current home keeps its place unless another is clearly nearer.
    if (relay.name == home_ && !avoid_current) ms = ms * 4 / 5;
    if (best == nullptr || ms < best_ms) {
      best = &relay;
      best_ms = ms;
    }
  }
  if (best == nullptr) return;
  if (best->name == home_ && !avoid_current) {
    return;
  }
  home_on(*best);
}

void HomeRelay::home_on(const control::RelayInfo& relay) {
  log(LogLevel::info, kLog, "home relay: ", relay.name);
  home_ = relay.name;
  failover_.cancel();
  // Not connected to the new one yet: peers go elsewhere until it admits us.
  if (on_state_) on_state_(false);
  std::vector<std::string> addresses;
  for (const auto& address : relay.addresses) addresses.push_back(address.to_string());
  client_.connect(std::move(addresses), relay.node_key);
}

void HomeRelay::on_link_state(bool up, const std::string& detail) {
  log(up ? LogLevel::info : LogLevel::warn, kLog, home_.empty() ? std::string("relay") : home_,
      up ? " connected (" : " down (", detail, ")");
  if (up) failover_.cancel();
  else if (!failover_.armed()) failover_.arm(Clock::now() + kFailover);
  if (on_state_) on_state_(up);
}

}  // namespace knit::agent
