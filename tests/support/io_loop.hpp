// Drives a test's Asio loop in 10 ms slices until a condition holds or time runs out, so a test
// waits for what it expects and no longer.
#pragma once

#include <asio.hpp>

#include <chrono>
#include <functional>

#include "base/time.hpp"

namespace knit::testing {

// True when done() held before `limit` passed.
inline bool run_until(asio::io_context& io, const std::function<bool()>& done,
                      Duration limit = std::chrono::seconds(5)) {
  const auto deadline = Clock::now() + limit;
  while (!done() && Clock::now() < deadline) {
    io.restart();
    io.run_for(std::chrono::milliseconds(10));
  }
  return done();
}

}  // namespace knit::testing
