#include "base/checksum.hpp"

#include <bit>
#include <cstring>

namespace knit {

std::uint64_t checksum_accumulate(ByteSpan data, std::uint64_t sum) {
  const std::uint8_t* p = data.data();
  std::size_t n = data.size();
  if constexpr (std::endian::native == std::endian::little) {
    // RFC 1071 2(B): the sum does not depend on byte order. Native 64-bit words summed with
    // their carries fold to the byte-swapped sum of the big-endian 16-bit words (2^16 = 1 mod
    // 0xffff), at a quarter of the additions and no byte swap per word.
    std::uint64_t a = 0, b = 0, carries = 0;
    while (n >= 16) {
      std::uint64_t w[2];
      std::memcpy(w, p, sizeof w);
      carries += __builtin_add_overflow(a, w[0], &a);
      carries += __builtin_add_overflow(b, w[1], &b);
      p += 16;
      n -= 16;
    }
    if (n >= 8) {
      std::uint64_t w;
      std::memcpy(&w, p, sizeof w);
      carries += __builtin_add_overflow(a, w, &a);
      p += 8;
      n -= 8;
    }
    carries += __builtin_add_overflow(a, b, &a);
    const std::uint16_t native = checksum_fold(std::uint64_t{checksum_fold(a)} + carries);
    sum += static_cast<std::uint16_t>((native >> 8) | (native << 8));
  }
  // The rest (all of it on a big-endian machine) from an even offset, word by word.
  while (n >= 4) {
    sum += load_be32(p);
    p += 4;
    n -= 4;
  }
  if (n >= 2) {
    sum += load_be16(p);
    p += 2;
    n -= 2;
  }
  if (n == 1) sum += std::uint64_t{p[0]} << 8;
  return sum;
}

std::uint16_t checksum_fold(std::uint64_t sum) {
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  return static_cast<std::uint16_t>(sum);
}

std::uint16_t internet_checksum(ByteSpan data) {
  return static_cast<std::uint16_t>(~checksum_fold(checksum_accumulate(data)));
}

}  // namespace knit
