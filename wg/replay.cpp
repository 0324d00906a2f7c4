#include "wg/replay.hpp"

#include <algorithm>

#include "wg/constants.hpp"

namespace knit::wg {

namespace {
constexpr std::uint64_t kBlockShift = 6;  // log2(kBlockBits)
static_assert((std::uint64_t{1} << kBlockShift) == ReplayWindow::kBlockBits);
static_assert((ReplayWindow::kRingBlocks & (ReplayWindow::kRingBlocks - 1)) == 0,
              "the ring index is taken with a mask");
constexpr std::uint64_t kRingMask = ReplayWindow::kRingBlocks - 1;
}  // namespace

bool ReplayWindow::check_and_update(std::uint64_t counter) {
  // Whitepaper §6.1: a key may carry at most REJECT_AFTER_MESSAGES messages; anything at or
  // beyond that limit is refused even if authentic, so the counter can never wrap.
  if (counter >= kRejectAfterMessages) return false;

  const std::uint64_t block = counter >> kBlockShift;
  if (counter > greatest_) {
    // Slide forward: zero every block between the old head and the new one (RFC 6479 §2).
    // A jump of a whole ring or more clears all of it; cap the loop there.
    const std::uint64_t head = greatest_ >> kBlockShift;
    const std::uint64_t skipped = std::min<std::uint64_t>(block - head, kRingBlocks);
    for (std::uint64_t i = 1; i <= skipped; ++i) ring_[(head + i) & kRingMask] = 0;
    greatest_ = counter;
  } else if (greatest_ - counter > kWindowSize) {
    return false;  // too old: its bit may already belong to a newer block
  }

  const std::uint64_t bit = std::uint64_t{1} << (counter & (kBlockBits - 1));
  std::uint64_t& word = ring_[block & kRingMask];
  if (word & bit) return false;  // replayed
  word |= bit;
  return true;
}

void ReplayWindow::reset() {
  greatest_ = 0;
  ring_.fill(0);
}

}  // namespace knit::wg
