#include "control/reconnect_backoff.hpp"

#include <algorithm>

namespace knit::control {

namespace {
constexpr int kMaxDoublings = 20;
}  // namespace

void ReconnectBackoff::on_session() { failures_ = 0; }

void ReconnectBackoff::on_session_lost(Instant now) {
  failures_ = 0;
  lost_at_ = now;
}

Duration ReconnectBackoff::ceiling(Instant now) const {
  Duration ceiling = config_.initial;
  for (int i = 0; i < std::min(failures_, kMaxDoublings) && ceiling < config_.max; ++i) ceiling *= 2;
  ceiling = std::min(ceiling, config_.max);
  if (lost_at_ && now - *lost_at_ < config_.recovering_window)
    ceiling = std::min(ceiling, config_.recovering_max);
  return ceiling;
}

Duration ReconnectBackoff::next_delay(Instant now) {
  const auto top = std::chrono::duration_cast<std::chrono::milliseconds>(ceiling(now));
  if (failures_ < kMaxDoublings) ++failures_;
  const auto half = top / 2;
  const auto span = static_cast<std::uint32_t>((top - half).count());
  return half + std::chrono::milliseconds(span == 0 ? 0 : rng_.uniform(span + 1));
}

}  // namespace knit::control
