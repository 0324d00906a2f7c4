// TokenBucket: the rate bound on probing, as a GCRA ("virtual scheduling", ITU-T I.371): a
// theoretical arrival time that every admitted packet pushes 1/rate into the future. In any
// window of length T at most burst + rate * T packets are admitted, which is the bound the
// tests check. No clock is read: `now` comes in.
#pragma once

#include <cstdint>

#include "base/time.hpp"

namespace knit::punch {

class TokenBucket {
 public:
  TokenBucket(std::uint32_t burst, std::uint32_t rate_per_second);

  // Admits n packets now, or none (false).
  bool take(Instant now, std::uint32_t n = 1);
  // The earliest instant at which take(n) will succeed (now if it would now).
  Instant when_available(Instant now, std::uint32_t n = 1) const;

  std::uint32_t burst() const { return burst_; }
  std::uint32_t rate() const { return rate_; }

 private:
  Duration interval_;
  std::uint32_t burst_;
  std::uint32_t rate_;
  Instant tat_ = Instant::min();  // theoretical arrival time of the next packet
};

}  // namespace knit::punch
