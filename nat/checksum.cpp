#include "nat/checksum.hpp"

namespace knit::nat {

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
