// Per-source query rate limit: a token bucket per client address (kRatePerSecond, kRateBurst).
// Bounded: at most kRateSources buckets; when full, full (idle) buckets are forgotten first, and
// if none is, the new source shares the refusal (a flood of sources cannot grow memory).
#pragma once

#include <map>

#include "base/ip.hpp"
#include "base/time.hpp"
#include "dns/constants.hpp"

namespace knit::dns {

class RateLimiter {
 public:
  RateLimiter(double per_second = kRatePerSecond, double burst = kRateBurst, std::size_t sources = kRateSources)
      : per_second_(per_second), burst_(burst), max_sources_(sources) {}
  // True when a query from `source` may be answered now (and takes a token).
  bool allow(Instant now, const IpAddress& source);
  std::size_t sources() const { return buckets_.size(); }

 private:
  struct Bucket {
    double tokens = 0;
    Instant updated{};
  };
  void refill(Instant now, Bucket& bucket) const;
  double per_second_;
  double burst_;
  std::size_t max_sources_;
  std::map<IpAddress, Bucket> buckets_;
};

}  // namespace knit::dns
