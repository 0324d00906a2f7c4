#include "dns/rate_limiter.hpp"

#include <algorithm>
#include <chrono>

namespace knit::dns {

void RateLimiter::refill(Instant now, Bucket& bucket) const {
  if (now <= bucket.updated) return;
  const double seconds = std::chrono::duration<double>(now - bucket.updated).count();
  bucket.tokens = std::min(burst_, bucket.tokens + seconds * per_second_);
  bucket.updated = now;
}

bool RateLimiter::allow(Instant now, const IpAddress& source) {
  auto it = buckets_.find(source);
  if (it == buckets_.end()) {
    if (buckets_.size() >= max_sources_) {
      // Forget sources whose bucket has refilled: they are idle.
      for (auto b = buckets_.begin(); b != buckets_.end();) {
        refill(now, b->second);
        b = b->second.tokens >= burst_ ? buckets_.erase(b) : std::next(b);
      }
      if (buckets_.size() >= max_sources_) return false;
    }
    it = buckets_.emplace(source, Bucket{burst_, now}).first;
  }
  refill(now, it->second);
  if (it->second.tokens < 1) return false;
  it->second.tokens -= 1;
  return true;
}

}  // namespace knit::dns
