#include "punch/portmap/schedule.hpp"

#include <algorithm>

namespace knit::punch {

void RenewalSchedule::granted(Instant now, Duration lifetime) {
  active_ = true;
  if (lifetime <= Duration::zero()) {
    expires_at_.reset();
    renew_at_ = now + config_.permanent_refresh;
    return;
  }
  expires_at_ = now + lifetime;
  renew_at_ = now + lifetime / 2;
}

void RenewalSchedule::renewal_failed(Instant now) {
  if (!active_) return;
  if (!expires_at_) {
    renew_at_ = now + config_.permanent_refresh / 4;
    return;
  }
  const Duration left = *expires_at_ - now;
  // Halve what is left, but never hammer the gateway; past the expiry poll() says expired.
  renew_at_ = now + std::max(left / 2, config_.min_retry);
}

RenewalSchedule::Action RenewalSchedule::poll(Instant now) const {
  if (!active_) return Action::none;
  if (expires_at_ && now >= *expires_at_) return Action::expired;
  if (now >= renew_at_) return Action::renew;
  return Action::none;
}

std::optional<Instant> RenewalSchedule::next_deadline() const {
  if (!active_) return std::nullopt;
  if (expires_at_) return std::min(renew_at_, *expires_at_);
  return renew_at_;
}

bool EpochTracker::observe(Instant now, std::uint32_t epoch_s) {
  const Sample current{now, epoch_s};
  if (!last_) {
    last_ = current;
    return false;
  }
  const Sample previous = *last_;
  last_ = current;
  // §8.5: an epoch more than one second behind the previous one means a restart.
  if (epoch_s + 1 < previous.epoch_s) return true;
  const std::int64_t client_delta =
      std::chrono::duration_cast<std::chrono::seconds>(now - previous.at).count();
  const std::int64_t server_delta = std::int64_t{epoch_s} - std::int64_t{previous.epoch_s};
  // Both clocks must have advanced alike, allowing 1/16 drift and 2 s of rounding.
  if (server_delta + 2 < client_delta - client_delta / 16) return true;
  if (client_delta + 2 < server_delta - server_delta / 16) return true;
  return false;
}

}  // namespace knit::punch
