// Per-packet cost of the WireGuard data path, through the real Device core (encrypt: a TUN
// packet to a sealed datagram; decrypt: a datagram to a TUN write), and of the bare AEAD for
// comparison. Prints ns/packet and Gbit/s of plaintext.
#include <benchmark/benchmark.h>

#include <cstring>
#include <deque>

#include "base/random.hpp"
#include "wg/crypto.hpp"
#include "wg/device.hpp"
#include "bench/bench_packets.hpp"

namespace knit::wg {
namespace {

class CaptureIo : public Transport, public TunSink {
 public:
  void send(const Peer&, std::span<const ByteSpan> datagrams) override {
    for (ByteSpan datagram : datagrams) {
      last.assign(datagram.begin(), datagram.end());
      ++sent;
    }
  }
  void send_reply(const Endpoint&, ByteSpan datagram) override {
    last.assign(datagram.begin(), datagram.end());
    ++sent;
  }
  void write_tun(MutableByteSpan packet) override {
    tun_bytes += packet.size();
    ++tun_packets;
  }
  Bytes last;
  std::uint64_t sent = 0, tun_packets = 0, tun_bytes = 0;
};

using knit::bench::ipv4_packet;

// Two devices with an established session, A -> B.
struct Pair {
  CaptureIo io_a, io_b;
  SeededRandom rng_a{1}, rng_b{2};
  Device a{io_a, io_a, rng_a}, b{io_b, io_b, rng_b};
  Now now{Instant{} + 1000s, WallTime{} + std::chrono::hours(24 * 365 * 50)};
  Endpoint ep_a = *Endpoint::parse("192.0.2.1:1"), ep_b = *Endpoint::parse("192.0.2.2:2");
  Bytes frame = Bytes(kFrameHeadroom + 65535 + kFrameTailroom);

  Pair() {
    SeededRandom keys(3);
    a.set_private_key(crypto::generate_private_key(keys));
    b.set_private_key(crypto::generate_private_key(keys));
    Peer* pb = a.add_peer(b.identity().public_key, now);
    Peer* pa = b.add_peer(a.identity().public_key, now);
    a.set_endpoint(*pb, ep_b);
    b.set_endpoint(*pa, ep_a);
    a.add_allowed_ip(*pb, *IpPrefix::parse("10.0.0.2/32"));
    b.add_allowed_ip(*pa, *IpPrefix::parse("10.0.0.1/32"));
    send(ipv4_packet(64, 0x0a000001, 0x0a000002));
    // Initiation -> response -> first data: the session is confirmed on both sides.
    for (int i = 0; i < 3; ++i) {
      if (i % 2 == 0) b.on_datagram(now, ep_a, io_a.last);
      else a.on_datagram(now, ep_b, io_b.last);
    }
  }
  void send(const Bytes& packet) {
    std::memcpy(frame.data() + kFrameHeadroom, packet.data(), packet.size());
    a.on_tun_packet(now, frame, packet.size());
  }
};

void BM_DeviceEncrypt(benchmark::State& state) {
  Pair pair;
  const Bytes packet = ipv4_packet(static_cast<std::size_t>(state.range(0)), 0x0a000001, 0x0a000002);
  for (auto _ : state) {
    pair.send(packet);
    benchmark::DoNotOptimize(pair.io_a.last.data());
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations()) * state.range(0));
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()));
}
BENCHMARK(BM_DeviceEncrypt)->Arg(64)->Arg(512)->Arg(1420);

void BM_DeviceDecrypt(benchmark::State& state) {
  Pair pair;
  const Bytes packet = ipv4_packet(static_cast<std::size_t>(state.range(0)), 0x0a000001, 0x0a000002);
  // Each iteration decrypts a batch of distinct sealed datagrams (the replay window rejects
  // repeats); sealing happens outside the timed region (manual timing, per packet).
  constexpr std::size_t kBatch = 256;
  std::vector<Bytes> sealed(kBatch);
  for (auto _ : state) {
    for (auto& d : sealed) {
      pair.send(packet);
      d = pair.io_a.last;
    }
    const auto start = std::chrono::steady_clock::now();
    for (auto& d : sealed) pair.b.on_datagram(pair.now, pair.ep_a, d);
    const auto end = std::chrono::steady_clock::now();
    state.SetIterationTime(std::chrono::duration<double>(end - start).count() / kBatch);
  }
  if (pair.io_b.tun_packets != static_cast<std::uint64_t>(state.iterations()) * kBatch + 1)
    state.SkipWithError("not every packet was delivered");
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations()) * state.range(0));
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()));
}
BENCHMARK(BM_DeviceDecrypt)->Arg(64)->Arg(512)->Arg(1420)->UseManualTime();

void BM_BareAead(benchmark::State& state) {
  SymmetricKey key;
  SeededRandom rng(5);
  rng.fill(key.span());
  Bytes buf(static_cast<std::size_t>(state.range(0)) + kAuthTagSize);
  std::uint64_t counter = 0;
  for (auto _ : state) {
    crypto::aead_encrypt(buf, ByteSpan(buf.data(), buf.size() - kAuthTagSize), counter++, key, {});
    benchmark::DoNotOptimize(buf.data());
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations()) * state.range(0));
}
BENCHMARK(BM_BareAead)->Arg(64)->Arg(1420);

}  // namespace
}  // namespace knit::wg

BENCHMARK_MAIN();
