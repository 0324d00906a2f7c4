// Time as the protocol cores see it: passed in by the caller, never read from a clock.
#pragma once

#include <chrono>

namespace knit {

using Clock = std::chrono::steady_clock;
// A monotonic instant. Tests start at Instant{} and advance it by hand.
using Instant = Clock::time_point;
using Duration = Clock::duration;
// Wall-clock time, needed only where a protocol puts a timestamp on the wire (TAI64N).
using WallTime = std::chrono::system_clock::time_point;

using namespace std::chrono_literals;

}  // namespace knit
