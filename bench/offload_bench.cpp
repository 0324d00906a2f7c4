// Per-packet cost of the TUN offload work (tun/offload.hpp) next to the bare AEAD it sits
// beside: splitting a 64 KiB TCP super-packet into MTU-sized segments (checksums included),
// coalescing segments back into super-packets, and ChaCha20-Poly1305 on one segment. The
// counters give ns per segment and Gbit/s of segment bytes.
#include <benchmark/benchmark.h>

#include <cstring>
#include <vector>

#include "tun/offload.hpp"
#include "wg/crypto.hpp"

namespace knit::tun {
namespace {

constexpr std::size_t kMss = 1368;  // a 1420-byte tunnel MTU, IPv4, TCP timestamps

// An IPv4 TCP packet with timestamps, valid lengths and checksums.
std::vector<std::uint8_t> tcp_packet(std::size_t payload, std::uint32_t seq, std::uint16_t id) {
  std::vector<std::uint8_t> p(52 + payload, 0x5a);
  p[0] = 0x45;
  p[1] = 0;
  store_be16(p.data() + 2, static_cast<std::uint16_t>(p.size()));
  store_be16(p.data() + 4, id);
  store_be16(p.data() + 6, 0x4000);
  p[8] = 64;
  p[9] = 6;
  p[10] = p[11] = 0;
  const std::uint8_t addrs[8] = {10, 0, 0, 1, 10, 0, 0, 2};
  std::memcpy(p.data() + 12, addrs, 8);
  store_be16(p.data() + 10, static_cast<std::uint16_t>(~checksum_fold(checksum_accumulate({p.data(), 20}))));
  std::uint8_t* t = p.data() + 20;
  store_be16(t, 40000);
  store_be16(t + 2, 5201);
  store_be32(t + 4, seq);
  store_be32(t + 8, 1);
  t[12] = 8 << 4;
  t[13] = 0x10;
  store_be16(t + 14, 502);
  t[16] = t[17] = t[18] = t[19] = 0;
  const std::uint8_t ts[12] = {1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2};
  std::memcpy(t + 20, ts, 12);
  const auto len = static_cast<std::uint32_t>(p.size() - 20);
  const std::uint64_t sum = checksum_accumulate({t, len}, pseudo_header_sum({p.data() + 12, 4}, {p.data() + 16, 4}, 6, len));
  store_be16(t + 16, static_cast<std::uint16_t>(~checksum_fold(sum)));
  return p;
}

void BM_Split64KiB(benchmark::State& state) {
  const std::size_t segments = 65535 / kMss - 1;
  const auto super = tcp_packet(segments * kMss, 1, 1);
  VirtioNetHeader h;
  h.flags = VirtioNetHeader::kNeedsCsum;
  h.gso_type = VirtioNetHeader::kGsoTcpV4;
  h.gso_size = kMss;
  h.csum_start = 20;
  h.csum_offset = 16;
  std::vector<std::uint8_t> out(2048);
  Segmenter s;
  for (auto _ : state) {
    s.start(h, super);
    while (std::size_t n = s.next(out)) benchmark::DoNotOptimize(n);
  }
  state.counters["ns/segment"] = benchmark::Counter(static_cast<double>(state.iterations() * segments),
                                                    benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
  state.counters["Gbit/s"] = benchmark::Counter(static_cast<double>(state.iterations() * segments * (kMss + 52) * 8) / 1e9,
                                                benchmark::Counter::kIsRate);
}
BENCHMARK(BM_Split64KiB);

class Discard final : public CoalescedSink {
 public:
  void write_coalesced(const VirtioNetHeader&, ByteSpan packet) override { benchmark::DoNotOptimize(packet.data()); }
};

void BM_Coalesce(benchmark::State& state) {
  const std::size_t segments = 45;
  std::vector<std::vector<std::uint8_t>> packets;
  for (std::size_t i = 0; i < segments; ++i)
    packets.push_back(tcp_packet(kMss, static_cast<std::uint32_t>(1 + i * kMss), static_cast<std::uint16_t>(i)));
  TcpCoalescer c;
  Discard sink;
  for (auto _ : state) {
    for (const auto& p : packets) c.add(p, sink);
    c.flush(sink);
  }
  state.counters["ns/segment"] = benchmark::Counter(static_cast<double>(state.iterations() * segments),
                                                    benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
  state.counters["Gbit/s"] = benchmark::Counter(static_cast<double>(state.iterations() * segments * (kMss + 52) * 8) / 1e9,
                                                benchmark::Counter::kIsRate);
}
BENCHMARK(BM_Coalesce);

void BM_BareSeal(benchmark::State& state) {
  wg::SymmetricKey key;
  std::vector<std::uint8_t> buf(kMss + 52 + 16, 0x42);
  std::uint64_t counter = 0;
  for (auto _ : state) {
    wg::crypto::aead_encrypt(buf, ByteSpan(buf.data(), kMss + 52), counter++, key, {});
    benchmark::DoNotOptimize(buf.data());
  }
  state.counters["ns/segment"] = benchmark::Counter(static_cast<double>(state.iterations()),
                                                    benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
  state.counters["Gbit/s"] = benchmark::Counter(static_cast<double>(state.iterations() * (kMss + 52) * 8) / 1e9,
                                                benchmark::Counter::kIsRate);
}
BENCHMARK(BM_BareSeal);

}  // namespace
}  // namespace knit::tun

BENCHMARK_MAIN();
