// The TUN offload core (tun/offload.hpp): virtio-net headers and super-packets as a TUN hands
// them over, and decrypted packets from peers into the TCP coalescer. Properties: a split
// never writes past its buffer and its segments carry exactly the super-packet's payload;
// everything the coalescer writes splits back into as many packets as went in (no packet lost,
// none invented); no crash, no out-of-bounds (the sanitizers watch).
//
// Input records: op u8 | length u16 | bytes[length]
//   op bit 0: 0 a TUN read (10-byte virtio header, then the packet) to split;
//             1 a packet for the coalescer; bit 1: flush the coalescer afterwards.
#include <cstddef>
#include <cstdint>
#include <vector>

#include "fuzz/fuzz_util.hpp"
#include "tun/offload.hpp"

using namespace knit;

namespace {

class Counting final : public tun::CoalescedSink {
 public:
  void write_coalesced(const tun::VirtioNetHeader& header, ByteSpan packet) override {
    tun::Segmenter s;
    if (s.start(header, packet) != tun::OffloadError::ok) {
      KNIT_FUZZ_CHECK(header.gso_type == tun::VirtioNetHeader::kGsoNone);
      ++packets;  // written as it came: one packet
      return;
    }
    std::vector<std::uint8_t> out(tun::kVirtioNetHeaderSize + tun::kMaxSuperPacket);
    while (s.next(out) > 0) ++packets;
    KNIT_FUZZ_CHECK(s.error() == tun::OffloadError::ok);
  }
  std::size_t packets = 0;
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  fuzz::Reader in(data, size);
  tun::TcpCoalescer coalescer;
  Counting sink;
  std::size_t fed = 0;
  std::vector<std::uint8_t> segment(1600);
  while (!in.empty()) {
    auto [op, bytes] = fuzz::next_record(in, tun::kVirtioNetHeaderSize + tun::kMaxSuperPacket);
    if ((op & 1) == 0) {
      if (bytes.size() < tun::kVirtioNetHeaderSize) continue;
      const auto header = tun::VirtioNetHeader::parse(bytes.data());
      const ByteSpan packet = ByteSpan(bytes).subspan(tun::kVirtioNetHeaderSize);
      tun::Segmenter s;
      if (s.start(header, packet) != tun::OffloadError::ok) continue;
      const auto layout = tun::transport_layout(packet);
      std::size_t payload = 0;
      while (const std::size_t n = s.next(segment)) {
        KNIT_FUZZ_CHECK(n <= segment.size());
        if (layout && header.gso_type != tun::VirtioNetHeader::kGsoNone) {
          KNIT_FUZZ_CHECK(n >= layout->headers() && n - layout->headers() <= header.gso_size);
          payload += n - layout->headers();
        }
      }
      if (s.error() == tun::OffloadError::ok && layout && header.gso_type != tun::VirtioNetHeader::kGsoNone)
        KNIT_FUZZ_CHECK(payload == packet.size() - layout->headers());
    } else {
      if (bytes.empty()) continue;
      coalescer.add(bytes, sink);
      ++fed;
    }
    if (op & 2) coalescer.flush(sink);
  }
  coalescer.flush(sink);
  KNIT_FUZZ_CHECK(sink.packets == fed);
  return 0;
}
