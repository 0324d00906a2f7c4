// Which external ports of one (external address, protocol) are taken: a 65536-bit bitmap
// (8 KiB), allocated on first use. Finding a free port scans 64 ports a word, so even a nearly
// full range answers in at most 1024 word reads, with no hashing.
//
//   bits_[w] bit i  <->  port 64*w + i      (even ports on even bits: parity masks below)
#pragma once

#include <cstdint>
#include <optional>
#include <vector>

namespace knit::nat {

class PortSpace {
 public:
  enum class Parity : std::uint8_t { any, even, odd };

  bool taken(std::uint16_t port) const {
    return !bits_.empty() && (bits_[port >> 6] >> (port & 63)) & 1;
  }
  void take(std::uint16_t port);
  void release(std::uint16_t port);

  // A free port in [lo, hi] with the given parity: the first one at or after `start`,
  // wrapping around to lo. Requires lo <= start <= hi.
  std::optional<std::uint16_t> find_free(std::uint16_t lo, std::uint16_t hi, std::uint16_t start,
                                         Parity parity) const;

  std::size_t memory_bytes() const { return bits_.capacity() * sizeof(std::uint64_t); }

 private:
  std::optional<std::uint16_t> first_free(std::uint32_t from, std::uint32_t to,
                                          std::uint64_t parity_mask) const;
  std::vector<std::uint64_t> bits_;
};

}  // namespace knit::nat
