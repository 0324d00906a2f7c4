// The replay window against a numbered table of cases run in sequence on one window, then
// sweeps and a differential check against a plain set of seen counters.
#include <gtest/gtest.h>

#include <cstdint>
#include <limits>
#include <set>

#include "base/random.hpp"
#include "wg/constants.hpp"
#include "wg/replay.hpp"

namespace knit::wg {
namespace {

constexpr std::uint64_t W = ReplayWindow::kWindowSize;                                 // 8128
constexpr std::uint64_t kRing = ReplayWindow::kRingBlocks * ReplayWindow::kBlockBits;  // 8192
constexpr std::uint64_t R = kRejectAfterMessages;
constexpr std::uint64_t kMax = std::numeric_limits<std::uint64_t>::max();

struct Row {
  std::uint64_t counter;
  bool expected;
};

// Each row depends on the ones before it; the comment says what the row exercises.
// clang-format off
constexpr Row kTable[] = {
    /*  1 */ {0, true},                           // the first counter of a session
    /*  2 */ {0, false},                          // exact duplicate
    /*  3 */ {1, true},                           // in order
    /*  4 */ {1, false},                          // duplicate
    /*  5 */ {3, true},                           // skips 2
    /*  6 */ {2, true},                           // late but inside the window
    /*  7 */ {2, false},                          // ... and only once
    /*  8 */ {3, false},                          // duplicate
    /*  9 */ {63, true},                          // last bit of block 0
    /* 10 */ {64, true},                          // first bit of block 1
    /* 11 */ {62, true},                          // back into block 0
    /* 12 */ {W, true},                           // forward: 0 is now exactly kWindowSize behind
    /* 13 */ {0, false},                          // at the edge, already seen
    /* 14 */ {4, true},                           // inside, unseen
    /* 15 */ {W + 1, true},                       // forward by one: 0 falls out of the window
    /* 16 */ {0, false},                          // too old
    /* 17 */ {1, false},                          // exactly at the edge, already seen
    /* 18 */ {5, true},                           // inside, unseen
    /* 19 */ {W + 1, false},                      // duplicate of the greatest
    /* 20 */ {3 * W, true},                       // jump forward by more than the window
    /* 21 */ {2 * W, true},                       // exactly kWindowSize behind, unseen
    /* 22 */ {2 * W - 1, false},                  // kWindowSize + 1 behind
    /* 23 */ {2 * W, false},                      // duplicate at the edge
    /* 24 */ {3 * W - 1, true},                   // inside, unseen
    /* 25 */ {W + 1, false},                      // something accepted long ago
    /* 26 */ {4 * W - 1, true},                   // forward by kWindowSize - 1
    /* 27 */ {3 * W, false},                      // seen in row 20, still inside
    /* 28 */ {3 * W - 1, false},                  // exactly at the edge, seen in row 24
    /* 29 */ {3 * W - 2, false},                  // one past the edge
    /* 30 */ {3 * W + 1, true},                   // inside, unseen
    /* 31 */ {4 * W - 1 + kRing, true},           // jump by exactly the ring: all cleared
    /* 32 */ {4 * W - 1, false},                  // the same bit of the same ring slot, but too old
    /* 33 */ {4 * W - 1 + kRing - W, true},       // edge of the new window; its slot was cleared
    /* 34 */ {4 * W - 1 + kRing - W - 1, false},  // one past the edge
    /* 35 */ {R, false},                          // REJECT_AFTER_MESSAGES itself (whitepaper §6.1)
    /* 36 */ {R + 1, false},                      // beyond the limit
    /* 37 */ {kMax, false},                       // 2^64 - 1
    /* 38 */ {R - 1, true},                       // the last usable counter
    /* 39 */ {R - 1, false},                      // duplicate
    /* 40 */ {R - 2, true},                       // inside, unseen
    /* 41 */ {R, false},                          // still refused once the window reached the limit
    /* 42 */ {R - 1 - W, true},                   // edge of the window below the limit
    /* 43 */ {R - 2 - W, false},                  // just outside
    /* 44 */ {0, false},                          // far too old
};
// clang-format on

TEST(ReplayWindow, NumberedTable) {
  ReplayWindow window;
  int row = 0;
  for (const Row& r : kTable) {
    ++row;
    EXPECT_EQ(window.check_and_update(r.counter), r.expected)
        << "row " << row << ": counter " << r.counter;
  }
}

TEST(ReplayWindow, ResetForgetsEverything) {
  ReplayWindow window;
  EXPECT_TRUE(window.check_and_update(100000));
  EXPECT_FALSE(window.check_and_update(5));
  window.reset();
  EXPECT_EQ(window.greatest(), 0u);
  EXPECT_TRUE(window.check_and_update(5));
  EXPECT_TRUE(window.check_and_update(0));
  EXPECT_TRUE(window.check_and_update(100000));
}

TEST(ReplayWindow, InOrderAcrossManyRingWraps) {
  ReplayWindow window;
  for (std::uint64_t c = 0; c < 5 * kRing + 17; ++c) {
    ASSERT_TRUE(window.check_and_update(c)) << c;
    ASSERT_FALSE(window.check_and_update(c)) << c;
    if (c >= 1) {
      ASSERT_FALSE(window.check_and_update(c - 1)) << c;
    }
  }
}

TEST(ReplayWindow, WholeWindowBackwards) {
  ReplayWindow window;
  // After W, every counter from W - 1 down to 0 is inside the window and new exactly once.
  ASSERT_TRUE(window.check_and_update(W));
  for (std::uint64_t c = W; c-- > 0;) ASSERT_TRUE(window.check_and_update(c)) << c;
  for (std::uint64_t c = 0; c <= W; ++c) ASSERT_FALSE(window.check_and_update(c)) << c;
}

TEST(ReplayWindow, ForwardJumpsAroundTheRingSize) {
  // Jumps of ring size - 1, ring size and ring size + 1 must each leave no stale bits behind.
  for (std::uint64_t jump : {kRing - 65, kRing - 64, kRing - 1, kRing, kRing + 1, 3 * kRing + 7}) {
    ReplayWindow window;
    for (std::uint64_t c = 0; c <= W; ++c) ASSERT_TRUE(window.check_and_update(c));
    const std::uint64_t top = W + jump;
    ASSERT_TRUE(window.check_and_update(top)) << jump;
    for (std::uint64_t c = top - W; c < top; ++c) {
      // Counters seen before the jump are still rejected as duplicates; all others are new.
      const bool seen_before = c <= W;
      ASSERT_EQ(window.check_and_update(c), !seen_before) << "jump " << jump << " counter " << c;
    }
    ASSERT_FALSE(window.check_and_update(top - W - 1)) << jump;
  }
}

// The bitmap must behave exactly like remembering every counter forever, within the window.
TEST(ReplayWindow, MatchesANaiveSetOfSeenCounters) {
  SeededRandom rng(6479);
  ReplayWindow window;
  std::set<std::uint64_t> seen;
  std::uint64_t greatest = 0;
  std::uint64_t base = 0;
  for (int i = 0; i < 300000; ++i) {
    // Mostly near the front, sometimes behind the window, sometimes a big jump.
    const std::uint32_t kind = rng.uniform(100);
    std::uint64_t c;
    if (kind < 2) {
      base += rng.uniform(4 * kRing);
      c = base;
    } else if (kind < 5) {
      c = base > 2 * W ? base - W - rng.uniform(static_cast<std::uint32_t>(W)) : 0;
    } else {
      c = base + rng.uniform(200);
      if (rng.uniform(2) == 0) c = c > 300 ? c - 300 + rng.uniform(64) : c;
      base += rng.uniform(3);
    }
    bool expected = !seen.contains(c) && (c > greatest || greatest - c <= W) && c < R;
    if (expected) {
      seen.insert(c);
      if (c > greatest) greatest = c;
    }
    ASSERT_EQ(window.check_and_update(c), expected) << "step " << i << " counter " << c;
  }
}

}  // namespace
}  // namespace knit::wg
