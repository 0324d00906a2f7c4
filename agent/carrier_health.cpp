#include "agent/carrier_health.hpp"

#include <cstdio>

namespace knit::agent {

namespace {

std::string seconds_text(Duration d) {
  char text[32];
  std::snprintf(text, sizeof text, "%.1f s", std::chrono::duration<double>(d).count());
  return text;
}

}  // namespace

std::string_view to_string(CarrierLiveness liveness) {
  switch (liveness) {
    case CarrierLiveness::up: return "up";
    case CarrierLiveness::down: return "down";
    case CarrierLiveness::recovering: return "recovering";
  }
  return "up";
}

void CarrierHealth::watch(Instant now, const std::vector<control::NodeKey>& carriers) {
  std::map<control::NodeKey, Carrier> next;
  for (const control::NodeKey& key : carriers) {
    auto it = carriers_.find(key);
    if (it != carriers_.end()) {
      next.emplace(key, it->second);
    } else {
      Carrier fresh;
      fresh.heard = now;  // a grace of kCarrierDownAfter to be heard
      next.emplace(key, fresh);
    }
  }
  carriers_ = std::move(next);
}

void CarrierHealth::observe(Instant now, const control::NodeKey& carrier, std::optional<Instant> disco_heard,
                            std::uint64_t rx_bytes) {
  auto it = carriers_.find(carrier);
  if (it == carriers_.end()) return;
  Carrier& c = it->second;
  std::optional<Instant> evidence;
  // A disco time we have not seen before: the moment it names (never later than now).
  if (disco_heard && (!c.disco_seen || *disco_heard > *c.disco_seen)) {
    evidence = std::min(*disco_heard, now);
    c.disco_seen = disco_heard;
  }
  // WireGuard: the counter grew since the last look (or is seen for the first time after it
  // was once zero: nothing to compare with, so no evidence).
  if (c.rx && rx_bytes > *c.rx) evidence = now;
  c.rx = rx_bytes;
  if (!evidence) return;
  // Evidence older than the moment the carrier went down says nothing about now.
  if (c.liveness != CarrierLiveness::up && *evidence <= c.down_since) return;
  if (!c.ever_heard || *evidence > c.heard) c.heard = *evidence;
  c.ever_heard = true;
  if (c.liveness == CarrierLiveness::down) {
    c.liveness = CarrierLiveness::recovering;
    c.recovering_since = *evidence;
  }
}

bool CarrierHealth::on_timers(Instant now) {
  bool changed = false;
  for (auto& [key, c] : carriers_) {
    const bool silent = now - c.heard > kCarrierDownAfter;
    switch (c.liveness) {
      case CarrierLiveness::up:
        if (silent) {
          c.liveness = CarrierLiveness::down;
          c.down_since = now;
          changed = true;
        }
        break;
      case CarrierLiveness::recovering:
        if (silent) {
          c.liveness = CarrierLiveness::down;  // it went quiet again: start over
        } else if (now - c.recovering_since >= kCarrierUpAfter && now - c.heard <= 2 * kCarrierProbeInterval) {
          c.liveness = CarrierLiveness::up;
          changed = true;
        }
        break;
      case CarrierLiveness::down:
        break;
    }
  }
  return changed;
}

std::vector<control::NodeKey> CarrierHealth::take_pings(Instant now) {
  std::vector<control::NodeKey> out;
  for (auto& [key, c] : carriers_) {
    // Heard lately (traffic flows, its heartbeats answer): no ping needed. A recovering
    // carrier is pinged on regardless, so it can prove itself.
    if (c.liveness == CarrierLiveness::up && c.ever_heard && now - c.heard < kCarrierProbeInterval) continue;
    if (c.last_ping && now - *c.last_ping < kCarrierProbeInterval) continue;
    c.last_ping = now;
    out.push_back(key);
  }
  return out;
}

bool CarrierHealth::down(const control::NodeKey& carrier) const {
  auto it = carriers_.find(carrier);
  return it != carriers_.end() && it->second.liveness != CarrierLiveness::up;
}

std::vector<control::NodeKey> CarrierHealth::down_carriers() const {
  std::vector<control::NodeKey> out;
  for (const auto& [key, c] : carriers_)
    if (c.liveness != CarrierLiveness::up) out.push_back(key);
  return out;
}

std::optional<CarrierHealthStatus> CarrierHealth::status(const control::NodeKey& carrier, Instant now) const {
  auto it = carriers_.find(carrier);
  if (it == carriers_.end()) return std::nullopt;
  const Carrier& c = it->second;
  CarrierHealthStatus s;
  s.node_key = carrier;
  s.liveness = c.liveness;
  if (c.ever_heard) s.silent_for = now - c.heard;
  switch (c.liveness) {
    case CarrierLiveness::up:
      break;
    case CarrierLiveness::down:
      s.down_for = now - c.down_since;
      s.reason = c.ever_heard ? "no answer for " + seconds_text(now - c.heard)
                              : "never answered (watched for " + seconds_text(now - c.heard) + ")";
      break;
    case CarrierLiveness::recovering:
      s.down_for = now - c.down_since;
      s.reason = "answering again for " + seconds_text(now - c.recovering_since) + ", not trusted before " +
                 seconds_text(kCarrierUpAfter);
      break;
  }
  return s;
}

}  // namespace knit::agent
