// Batched sealing and opening on one and several threads (agent/crypto_workers.hpp), per
// packet, against the bare AEAD (libsodium's ChaCha20-Poly1305 IETF, the same call the device
// makes). Wall-clock time (UseRealTime): with threads the point is the elapsed time per packet.
//
//   BM_BareSeal/SIZE                       crypto_aead_chacha20poly1305_ietf_encrypt, one packet
//   BM_BareOpen/SIZE                       ..._decrypt, one packet
//   BM_WorkersSeal/SIZE/THREADS            CryptoWorkers::run over a batch of 128 seal jobs: the
//                                          AEAD and the hand-off, nothing else
//   BM_DeviceBatchSeal/SIZE/THREADS        the data plane's outbound batch: Device::prepare_seal
//                                          (peer, counter, padding), run, finish_seal (send)
//   BM_DeviceBatchOpen/SIZE/THREADS        the inbound batch: prepare_open, run, finish_open
//                                          (replay window, cryptokey routing, TUN write)
#include <benchmark/benchmark.h>
#include <sodium.h>

#include <chrono>
#include <cstring>
#include <vector>

#include "agent/crypto_workers.hpp"
#include "base/random.hpp"
#include "wg/crypto.hpp"
#include "wg/device.hpp"
#include "bench/bench_packets.hpp"

namespace knit {
namespace {

using agent::CryptoWorkers;
using wg::CryptoJob;

constexpr std::size_t kBatch = 128;  // agent::DataPlane::kBatch

class NullIo : public wg::Transport, public wg::TunSink {
 public:
  void send(const wg::Peer&, std::span<const ByteSpan> datagrams) override {
    for (ByteSpan d : datagrams) {
      if (keep) kept.emplace_back(d.begin(), d.end());
      ++sent;
    }
  }
  void send_reply(const Endpoint&, ByteSpan) override {}
  void write_tun(MutableByteSpan packet) override { tun_bytes += packet.size(); }
  bool keep = true;
  std::vector<Bytes> kept;
  std::uint64_t sent = 0, tun_bytes = 0;
};

using knit::bench::ipv4_packet;

void BM_BareSeal(benchmark::State& state) {
  unsigned char key[crypto_aead_chacha20poly1305_ietf_KEYBYTES];
  randombytes_buf(key, sizeof key);
  const auto size = static_cast<std::size_t>(state.range(0));
  Bytes buf(size + crypto_aead_chacha20poly1305_ietf_ABYTES);
  unsigned char nonce[crypto_aead_chacha20poly1305_ietf_NPUBBYTES] = {};
  std::uint64_t counter = 0;
  for (auto _ : state) {
    store_le64(nonce + 4, counter++);
    crypto_aead_chacha20poly1305_ietf_encrypt(buf.data(), nullptr, buf.data(), size, nullptr, 0, nullptr, nonce, key);
    benchmark::DoNotOptimize(buf.data());
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * size));
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()));
}
BENCHMARK(BM_BareSeal)->Arg(64)->Arg(1420)->UseRealTime();

void BM_BareOpen(benchmark::State& state) {
  unsigned char key[crypto_aead_chacha20poly1305_ietf_KEYBYTES];
  randombytes_buf(key, sizeof key);
  const auto size = static_cast<std::size_t>(state.range(0));
  Bytes sealed(size + crypto_aead_chacha20poly1305_ietf_ABYTES), out(size);
  unsigned char nonce[crypto_aead_chacha20poly1305_ietf_NPUBBYTES] = {};
  crypto_aead_chacha20poly1305_ietf_encrypt(sealed.data(), nullptr, out.data(), size, nullptr, 0, nullptr, nonce, key);
  for (auto _ : state) {
    if (crypto_aead_chacha20poly1305_ietf_decrypt(out.data(), nullptr, nullptr, sealed.data(), sealed.size(), nullptr,
                                                  0, nonce, key) != 0)
      state.SkipWithError("open failed");
    benchmark::DoNotOptimize(out.data());
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * size));
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()));
}
BENCHMARK(BM_BareOpen)->Arg(64)->Arg(1420)->UseRealTime();

void BM_WorkersSeal(benchmark::State& state) {
  const auto size = static_cast<std::size_t>(state.range(0));
  CryptoWorkers workers({static_cast<unsigned>(state.range(1)), 16 * 1024});
  wg::SymmetricKey key;
  SeededRandom rng(1);
  rng.fill(key.span());
  std::vector<Bytes> bufs(kBatch, Bytes(size + wg::kAuthTagSize));
  std::vector<CryptoJob> jobs(kBatch);
  std::uint64_t counter = 0;
  for (auto _ : state) {
    for (std::size_t i = 0; i < kBatch; ++i) {
      jobs[i].kind = CryptoJob::Kind::seal;
      jobs[i].key = &key;
      jobs[i].body = bufs[i].data();
      jobs[i].size = static_cast<std::uint32_t>(size);
      jobs[i].counter = counter++;
    }
    workers.run(jobs);
  }
  state.counters["on_workers"] = static_cast<double>(workers.stats().jobs_on_workers) / static_cast<double>(workers.stats().jobs);
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * kBatch * size));
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations() * kBatch));
  state.counters["ns_per_packet"] = benchmark::Counter(static_cast<double>(state.iterations() * kBatch),
                                                       benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
}
BENCHMARK(BM_WorkersSeal)->ArgsProduct({{1420}, {1, 2}})->UseRealTime();

// Two devices with a confirmed session, A -> B.
struct Pair {
  NullIo io_a, io_b;
  SeededRandom rng_a{1}, rng_b{2};
  wg::Device a{io_a, io_a, rng_a}, b{io_b, io_b, rng_b};
  wg::Now now{Instant{} + 1000s, WallTime{} + std::chrono::hours(24 * 365 * 50)};
  Endpoint ep_a = *Endpoint::parse("192.0.2.1:1"), ep_b = *Endpoint::parse("192.0.2.2:2");

  Pair() {
    SeededRandom keys(3);
    a.set_private_key(wg::crypto::generate_private_key(keys));
    b.set_private_key(wg::crypto::generate_private_key(keys));
    wg::Peer* pb = a.add_peer(b.identity().public_key, now);
    wg::Peer* pa = b.add_peer(a.identity().public_key, now);
    a.set_endpoint(*pb, ep_b);
    b.set_endpoint(*pa, ep_a);
    a.add_allowed_ip(*pb, *IpPrefix::parse("10.0.0.2/32"));
    b.add_allowed_ip(*pa, *IpPrefix::parse("10.0.0.1/32"));
    const Bytes first = ipv4_packet(64, 0x0a000001, 0x0a000002);
    Bytes frame(wg::kFrameHeadroom + first.size() + wg::kFrameTailroom);
    std::memcpy(frame.data() + wg::kFrameHeadroom, first.data(), first.size());
    a.on_tun_packet(now, frame, first.size());
    // Initiation -> response -> first data: the session is confirmed on both sides.
    for (int i = 0; i < 3; ++i) {
      NullIo& from = i % 2 == 0 ? io_a : io_b;
      std::vector<Bytes> datagrams = std::move(from.kept);
      from.kept.clear();
      for (Bytes& d : datagrams) (i % 2 == 0 ? b : a).on_datagram(now, i % 2 == 0 ? ep_a : ep_b, d);
    }
  }
};

// Frames as the data plane keeps them: kBatch slots with headroom and tailroom.
std::vector<Bytes> frames_of(const Bytes& packet) {
  std::vector<Bytes> frames(kBatch, Bytes(wg::kFrameHeadroom + packet.size() + wg::kFrameTailroom));
  return frames;
}

void BM_DeviceBatchSeal(benchmark::State& state) {
  Pair pair;
  pair.io_a.keep = false;
  const auto size = static_cast<std::size_t>(state.range(0));
  CryptoWorkers workers({static_cast<unsigned>(state.range(1)), 16 * 1024});
  const Bytes packet = ipv4_packet(size, 0x0a000001, 0x0a000002);
  std::vector<Bytes> frames = frames_of(packet);
  std::vector<CryptoJob> jobs(kBatch);
  for (auto _ : state) {
    std::size_t n = 0;
    for (Bytes& frame : frames) {
      // What reading the TUN leaves in the frame.
      std::memcpy(frame.data() + wg::kFrameHeadroom, packet.data(), packet.size());
      n += pair.a.prepare_seal(pair.now, frame, packet.size(), jobs[n]);
    }
    workers.run(std::span(jobs.data(), n));
    for (std::size_t i = 0; i < n; ++i) pair.a.finish_seal(pair.now, jobs[i]);
  }
  if (pair.io_a.sent < state.iterations() * kBatch) state.SkipWithError("not every packet was sealed");
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * kBatch * size));
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations() * kBatch));
  state.counters["ns_per_packet"] = benchmark::Counter(static_cast<double>(state.iterations() * kBatch),
                                                       benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
}
BENCHMARK(BM_DeviceBatchSeal)->ArgsProduct({{64, 1420}, {1, 2}})->UseRealTime();

void BM_DeviceBatchOpen(benchmark::State& state) {
  Pair pair;
  const auto size = static_cast<std::size_t>(state.range(0));
  CryptoWorkers workers({static_cast<unsigned>(state.range(1)), 16 * 1024});
  const Bytes packet = ipv4_packet(size, 0x0a000001, 0x0a000002);
  std::vector<Bytes> frames = frames_of(packet);
  std::vector<CryptoJob> jobs(kBatch);
  std::uint64_t delivered = 0;
  for (auto _ : state) {
    // Fresh datagrams each round (the replay window refuses repeats), sealed untimed.
    state.PauseTiming();
    pair.io_a.kept.clear();
    for (Bytes& frame : frames) {
      std::memcpy(frame.data() + wg::kFrameHeadroom, packet.data(), packet.size());
      pair.a.on_tun_packet(pair.now, frame, packet.size());
    }
    state.ResumeTiming();
    std::size_t n = 0;
    for (Bytes& d : pair.io_a.kept) n += pair.b.prepare_open(pair.now, pair.ep_a, d, jobs[n]);
    workers.run(std::span(jobs.data(), n));
    for (std::size_t i = 0; i < n; ++i) pair.b.finish_open(pair.now, jobs[i]);
    delivered += n;
  }
  if (delivered != state.iterations() * kBatch || pair.b.stats().rx_replayed_data != 0)
    state.SkipWithError("not every packet was opened");
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * kBatch * size));
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations() * kBatch));
  state.counters["ns_per_packet"] = benchmark::Counter(static_cast<double>(state.iterations() * kBatch),
                                                       benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
}
BENCHMARK(BM_DeviceBatchOpen)->ArgsProduct({{64, 1420}, {1, 2}})->UseRealTime();

}  // namespace
}  // namespace knit

BENCHMARK_MAIN();
