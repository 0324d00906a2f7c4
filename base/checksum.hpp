// The Internet checksum (RFC 1071), the one sum every layer that writes IP packets uses: the
// NAT engine (nat/), the TUN offload splitter (tun/offload), `knit ping`'s ICMP echo (cli/).
//
//   field value = ~fold( sum of the covered bytes as big-endian 16-bit words )
//                        (an odd last byte is padded with a zero byte)
//
// checksum_accumulate sums the data (as native 64-bit words with their carries, RFC 1071's
// byte-order independence) and adds it, folded and in big-endian order, to a 64-bit accumulator
// that folds to the same 16-bit sum (2^16 = 1 mod 0xffff) and cannot overflow for any packet; chain calls through `sum` (e.g. a pseudo-header sum first). An odd-length chunk may
// only come last: the sum assumes every chunk starts at an even offset of the covered data.
#pragma once

#include <cstdint>

#include "base/bytes.hpp"

namespace knit {

std::uint64_t checksum_accumulate(ByteSpan data, std::uint64_t sum = 0);
// Folds carries back into 16 bits.
std::uint16_t checksum_fold(std::uint64_t sum);
// The checksum field value for `data` (its checksum field zeroed): ~fold(sum).
std::uint16_t internet_checksum(ByteSpan data);

}  // namespace knit
