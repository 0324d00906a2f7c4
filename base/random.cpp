#include "base/random.hpp"

#include <sodium.h>

namespace knit {

std::uint64_t Random::next_u64() {
  std::uint8_t b[8];
  fill(b);
  std::uint64_t v = 0;
  for (std::uint8_t x : b) v = (v << 8) | x;
  return v;
}

std::uint32_t Random::uniform(std::uint32_t bound) {
  if (bound <= 1) return 0;
  // Rejection sampling avoids modulo bias.
  const std::uint64_t limit = (std::uint64_t{1} << 32) - ((std::uint64_t{1} << 32) % bound);
  for (;;) {
    std::uint64_t v = next_u64() & 0xffffffffu;
    if (v < limit) return static_cast<std::uint32_t>(v % bound);
  }
}

void SystemRandom::fill(std::span<std::uint8_t> out) { randombytes_buf(out.data(), out.size()); }

void SeededRandom::fill(std::span<std::uint8_t> out) {
  std::size_t i = 0;
  while (i < out.size()) {
    std::uint64_t z = (state_ += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    z ^= z >> 31;
    for (int k = 0; k < 8 && i < out.size(); ++k, ++i) out[i] = static_cast<std::uint8_t>(z >> (8 * k));
  }
}

}  // namespace knit
