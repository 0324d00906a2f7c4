#include "punch/path/rate.hpp"

#include <algorithm>

namespace knit::punch {

TokenBucket::TokenBucket(std::uint32_t burst, std::uint32_t rate_per_second)
    : interval_(std::chrono::duration_cast<Duration>(std::chrono::seconds(1)) /
                std::max<std::uint32_t>(rate_per_second, 1)),
      burst_(std::max<std::uint32_t>(burst, 1)),
      rate_(std::max<std::uint32_t>(rate_per_second, 1)) {}

bool TokenBucket::take(Instant now, std::uint32_t n) {
  if (n == 0) return true;
  if (n > burst_) return false;
  const Instant next = std::max(tat_, now) + interval_ * n;
  // Admitted if the backlog this leaves is at most `burst` packets' worth of time.
  if (next - now > interval_ * burst_) return false;
  tat_ = next;
  return true;
}

Instant TokenBucket::when_available(Instant now, std::uint32_t n) const {
  if (n == 0) return now;
  n = std::min(n, burst_);
  const Instant next = std::max(tat_, now) + interval_ * n;
  const Instant at = next - interval_ * burst_;
  return std::max(at, now);
}

}  // namespace knit::punch
