// Sliding-window replay protection for data-message counters: the RFC 6479 bitmap, as
// WireGuard uses it (whitepaper §5.4.6: the receiver keeps a sliding window of counters).
//
//   counter c is bit (c % 64) of ring_[(c / 64) % 128]        greatest_ = G, in block B
//
//   ring_:  [ B-127 | B-126 | ... | B-1 |  B  ]   (128 words of 64 bits, used as a ring)
//              ^ partly outside the window: it is the next block to be cleared
//
//   c > G                  -> new: clear the blocks skipped over, G = c
//   G - kWindowSize <= c   -> judged by its bit
//   c < G - kWindowSize    -> too old, rejected without a look
//
// The window is one block short of the ring (8192 - 64 = 8128, as wireguard-go) because
// moving forward clears whole blocks (RFC 6479 §2): an update costs at most one pass over
// the ring however far the counter jumps, and usually touches one word.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>

namespace knit::wg {

class ReplayWindow {
 public:
  static constexpr std::size_t kBlockBits = 64;
  static constexpr std::size_t kRingBlocks = 128;
  // Counters this far behind the greatest one seen are still accepted once (wireguard-go: 8128).
  static constexpr std::uint64_t kWindowSize = (kRingBlocks - 1) * kBlockBits;  // 8128

  // Call only after the packet authenticated (whitepaper §5.4.6), so a forged counter cannot
  // move the window. True if `counter` is new: not seen before, not older than the window and
  // below kRejectAfterMessages. A true answer records it.
  bool check_and_update(std::uint64_t counter);
  // Forget every counter (a new session starts at counter 0).
  void reset();

  // The greatest counter accepted so far (0 when none).
  std::uint64_t greatest() const { return greatest_; }

 private:
  std::uint64_t greatest_ = 0;
  std::array<std::uint64_t, kRingBlocks> ring_{};
};

}  // namespace knit::wg
