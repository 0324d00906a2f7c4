// nat/too_big: the answer knitd writes about a packet from its own TUN that its peer's path
// cannot carry. Input: 2 bytes of MTU, then the packet. Properties: an answer fits in 1280
// bytes and (IPv4) every checksum in it is right; no verdict reads past the input.
#include <array>
#include <cstddef>
#include <cstdint>

#include "fuzz/fuzz_util.hpp"
#include "nat/packet_builder.hpp"
#include "nat/too_big.hpp"

using namespace knit;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  fuzz::Reader in(data, size);
  const std::size_t mtu = in.u16();
  const Bytes packet = in.rest();
  std::array<std::uint8_t, nat::kTooBigMaxSize> out{};
  std::size_t n = 0;
  const nat::TooBigVerdict verdict = nat::write_too_big(out, packet, mtu, n);
  if (verdict != nat::TooBigVerdict::answered) {
    KNIT_FUZZ_CHECK(n == 0);
    return 0;
  }
  KNIT_FUZZ_CHECK(n > 0 && n <= out.size());
  if ((out[0] >> 4) == 4) KNIT_FUZZ_CHECK(nat::verify_checksums(ByteSpan(out.data(), n)).ip);
  return 0;
}
