// The relay path's cost per packet, without sockets: relay::ServerCore with two admitted
// clients (tests/support/relay_clients.hpp), against the bare AEAD. With whole frames a packet
// through knit-relay is sealed by the sender's relay link, opened and sealed again by the relay,
// and opened by the receiver's link: four AEAD operations on top of WireGuard's own two. With
// split data frames (relay/frame.hpp, the default) each of the four seals or opens only the
// 33-byte head. CPU time per packet; the second argument is the form (0 whole, 1 split).
//
//   BM_BareSeal/SIZE          crypto_aead_chacha20poly1305_ietf_encrypt of one packet (the unit)
//   BM_LinkSeal/SIZE/SPLIT    the sender's link: ClientSession::seal_send into a reused buffer
//   BM_RelayForward/SIZE/SPLIT  the relay: ServerCore::on_bytes of a batch of sealed sends and
//                           take_output of the recvs sealed for the receiver (sealing by the
//                           sender and opening by the receiver not timed)
//   BM_RelayPath/SIZE/SPLIT   all three: seal, forward, open, per packet
#include <benchmark/benchmark.h>
#include <sodium.h>

#include <vector>

#include "base/random.hpp"
#include "tests/support/relay_clients.hpp"

namespace knit::relay {
namespace {

using testing::admit_all;
using testing::Client;
using testing::FakeIo;

constexpr std::size_t kBatch = 64;  // sends sealed back to back, as the agent's link writes them

// split: both clients offer split data frames (false: the whole form, as before the feature).
struct Pair {
  explicit Pair(bool split)
      : relay_key(wg::crypto::generate_private_key(rng)),
        core(relay_key, {}, io, rng),
        a(rng, core, Role::client, split ? kKnownFeatures : 0),
        b(rng, core, Role::client, split ? kKnownFeatures : 0) {
    if (!admit_all(core, {&a, &b}, now)) throw std::runtime_error("the clients were not admitted");
    a.absorb(scratch);  // the pongs to the first pings
    b.absorb(scratch);
  }
  SeededRandom rng{11};
  wg::PrivateKey relay_key;
  FakeIo io;
  ServerCore core;
  Client a, b;
  Instant now{};
  Bytes scratch;
};

void BM_BareSeal(benchmark::State& state) {
  const std::size_t size = static_cast<std::size_t>(state.range(0));
  std::vector<std::uint8_t> plain(size, 0x5a), sealed(size + 16), key(32, 7), nonce(12, 0);
  for (auto _ : state) {
    unsigned long long n = 0;
    crypto_aead_chacha20poly1305_ietf_encrypt(sealed.data(), &n, plain.data(), size, nullptr, 0, nullptr,
                                              nonce.data(), key.data());
    benchmark::DoNotOptimize(sealed.data());
    ++nonce[0];
  }
  state.SetItemsProcessed(state.iterations());
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * size));
}

void BM_LinkSeal(benchmark::State& state) {
  Pair p(state.range(1) != 0);
  const Bytes packet(static_cast<std::size_t>(state.range(0)), 0x5a);
  const std::vector<Bytes> one{packet};
  for (auto _ : state) {
    Bytes out = p.a.seal_sends(p.b.pub(), one);
    benchmark::DoNotOptimize(out.data());
  }
  state.SetItemsProcessed(state.iterations());
}

void BM_RelayForward(benchmark::State& state) {
  Pair p(state.range(1) != 0);
  const std::vector<Bytes> packets(kBatch, Bytes(static_cast<std::size_t>(state.range(0)), 0x5a));
  std::size_t forwarded = 0;
  for (auto _ : state) {
    state.PauseTiming();
    const Bytes sealed = p.a.seal_sends(p.b.pub(), packets);
    state.ResumeTiming();
    p.a.feed_raw(sealed, p.now);
    p.scratch.clear();
    p.core.take_output(p.b.id(), p.scratch);
    benchmark::DoNotOptimize(p.scratch.data());
    state.PauseTiming();
    forwarded += p.scratch.empty() ? 0 : kBatch;
    p.scratch.clear();
    state.ResumeTiming();
  }
  if (forwarded != state.iterations() * kBatch) state.SkipWithError("the relay did not forward every packet");
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations() * kBatch));
}

void BM_RelayPath(benchmark::State& state) {
  Pair p(state.range(1) != 0);
  const std::vector<Bytes> packets(kBatch, Bytes(static_cast<std::size_t>(state.range(0)), 0x5a));
  std::size_t received = 0;
  for (auto _ : state) {
    const Bytes sealed = p.a.seal_sends(p.b.pub(), packets);
    p.a.feed_raw(sealed, p.now);
    received += p.b.absorb(p.scratch);
  }
  if (received != state.iterations() * kBatch) state.SkipWithError("the receiver did not get every packet");
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations() * kBatch));
}

BENCHMARK(BM_BareSeal)->Arg(1420);
BENCHMARK(BM_LinkSeal)->Args({1420, 0})->Args({1420, 1});
BENCHMARK(BM_RelayForward)->Args({1420, 0})->Args({1420, 1});
BENCHMARK(BM_RelayPath)->Args({1420, 0})->Args({1420, 1});

}  // namespace
}  // namespace knit::relay

BENCHMARK_MAIN();
