#include "nat/port_space.hpp"

#include <bit>

namespace knit::nat {

namespace {
constexpr std::size_t kWords = 65536 / 64;
constexpr std::uint64_t kEvenBits = 0x5555555555555555ULL;
}  // namespace

void PortSpace::take(std::uint16_t port) {
  if (bits_.empty()) bits_.assign(kWords, 0);
  bits_[port >> 6] |= std::uint64_t{1} << (port & 63);
}

void PortSpace::release(std::uint16_t port) {
  if (bits_.empty()) return;
  bits_[port >> 6] &= ~(std::uint64_t{1} << (port & 63));
}

std::optional<std::uint16_t> PortSpace::first_free(std::uint32_t from, std::uint32_t to,
                                                   std::uint64_t parity_mask) const {
  for (std::uint32_t w = from >> 6; w <= (to >> 6); ++w) {
    std::uint64_t free = (bits_.empty() ? ~std::uint64_t{0} : ~bits_[w]) & parity_mask;
    if (w == (from >> 6)) free &= ~std::uint64_t{0} << (from & 63);
    if (w == (to >> 6) && (to & 63) != 63) free &= (std::uint64_t{1} << ((to & 63) + 1)) - 1;
    if (free != 0) return static_cast<std::uint16_t>(w * 64 + std::countr_zero(free));
  }
  return std::nullopt;
}

std::optional<std::uint16_t> PortSpace::find_free(std::uint16_t lo, std::uint16_t hi,
                                                  std::uint16_t start, Parity parity) const {
  const std::uint64_t mask = parity == Parity::any    ? ~std::uint64_t{0}
                             : parity == Parity::even ? kEvenBits
                                                      : ~kEvenBits;
  if (auto port = first_free(start, hi, mask)) return port;
  if (start > lo) return first_free(lo, start - 1u, mask);
  return std::nullopt;
}

}  // namespace knit::nat
