#include "base/checksum.hpp"

namespace knit {

std::uint64_t checksum_accumulate(ByteSpan data, std::uint64_t sum) {
  const std::uint8_t* p = data.data();
  std::size_t n = data.size();
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
