#include "nat/checksum.hpp"

namespace knit::nat {

std::uint32_t checksum_accumulate(ByteSpan data, std::uint32_t sum) {
  // 64-bit accumulator: no overflow for any IPv4 packet, folded once at the end.
  std::uint64_t acc = sum;
  std::size_t i = 0;
  for (; i + 1 < data.size(); i += 2) acc += load_be16(data.data() + i);
  if (i < data.size()) acc += std::uint64_t{data[i]} << 8;
  while (acc >> 32) acc = (acc & 0xffffffffu) + (acc >> 32);
  return static_cast<std::uint32_t>(acc);
}

std::uint16_t checksum_fold(std::uint32_t sum) {
  while (sum >> 16) sum = (sum & 0xffffu) + (sum >> 16);
  return static_cast<std::uint16_t>(sum);
}

std::uint16_t internet_checksum(ByteSpan data) {
  return static_cast<std::uint16_t>(~checksum_fold(checksum_accumulate(data)));
}

std::uint32_t pseudo_header_sum(std::uint32_t source, std::uint32_t destination,
                                std::uint8_t protocol, std::uint16_t length) {
  return (source >> 16) + (source & 0xffffu) + (destination >> 16) + (destination & 0xffffu) +
         protocol + length;
}

std::uint16_t checksum_adjust32(std::uint16_t checksum, std::uint32_t old_value,
                                std::uint32_t new_value) {
  checksum = checksum_adjust16(checksum, static_cast<std::uint16_t>(old_value >> 16),
                               static_cast<std::uint16_t>(new_value >> 16));
  return checksum_adjust16(checksum, static_cast<std::uint16_t>(old_value),
                           static_cast<std::uint16_t>(new_value));
}

}  // namespace knit::nat
