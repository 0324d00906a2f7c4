#include "agent/carrier_watch.hpp"

namespace knit::agent {

CarrierWatch::CarrierWatch(asio::io_context& io, Hooks hooks, ClockFn clock)
    : hooks_(std::move(hooks)), clock_(std::move(clock)), timer_(io, [this] { check(); }, clock_) {}

void CarrierWatch::watch(const std::vector<control::NodeKey>& carriers) {
  const Instant now = clock_();
  health_.watch(now, carriers);
  watched_ = carriers;
  if (watched_.empty()) {
    timer_.cancel();
    return;
  }
  // The first look at once: it records the rx counters the next ones compare with.
  if (!timer_.armed()) timer_.arm(now);
}

void CarrierWatch::check() {
  if (watched_.empty()) return;
  const Instant now = clock_();
  for (const control::NodeKey& key : watched_)
    health_.observe(now, key, hooks_.disco_heard ? hooks_.disco_heard(key) : std::nullopt,
                    hooks_.rx_bytes ? hooks_.rx_bytes(key) : 0);
  const bool changed = health_.on_timers(now);
  for (const control::NodeKey& key : health_.take_pings(now))
    if (hooks_.ping) hooks_.ping(key);
  timer_.arm(now + kCarrierCheckInterval);
  // Last: the membership re-applies the peers, which may call watch() again.
  if (changed && hooks_.changed) hooks_.changed();
}

}  // namespace knit::agent
