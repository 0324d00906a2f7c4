// What a one-peer delta costs knitd's device configuration in a map of N peers: the full walk
// (MeshConfigurator::apply_peers over the whole new map, what every delta cost before) against
// following the delta (apply_peer_changes, O(size of the change)). Each iteration moves one
// peer's endpoint back and forth, so every iteration changes the device.
#include <benchmark/benchmark.h>

#include <string>
#include <vector>

#include "agent/mesh.hpp"
#include "base/random.hpp"
#include "wg/crypto.hpp"
#include "tests/support/null_io.hpp"

namespace knit::agent {
namespace {

using knit::testing::NullIo;

std::vector<control::PeerInfo> make_map(std::size_t n) {
  std::vector<control::PeerInfo> map;
  SeededRandom rng(7);
  for (std::size_t i = 0; i < n; ++i) {
    control::PeerInfo info;
    info.name = "n" + std::to_string(i);
    info.node_key = wg::crypto::public_key_of(wg::crypto::generate_private_key(rng));
    info.disco_key = info.node_key;
    const std::uint8_t v4[4] = {100, 64, static_cast<std::uint8_t>(i >> 8), static_cast<std::uint8_t>(i)};
    info.ipv4 = IpAddress::v4(v4);
    info.endpoints = {*Endpoint::parse("192.0.2.1:41641")};
    info.online = true;
    map.push_back(std::move(info));
  }
  return map;
}

struct Fixture {
  explicit Fixture(std::size_t n) : device(io, io, rng), map(make_map(n)) {
    SeededRandom keys(42);
    device.set_private_key(wg::crypto::generate_private_key(keys));
    mesh.apply_peers(device, now, map, {});
  }
  control::PeerInfo& moving(std::int64_t i) {
    control::PeerInfo& p = map[map.size() / 2];
    p.endpoints = {Endpoint(*IpAddress::parse("198.51.100.7"), static_cast<std::uint16_t>(1000 + (i & 1)))};
    return p;
  }
  SeededRandom rng{1};
  NullIo io;
  wg::Device device;
  MeshConfigurator mesh;
  wg::Now now{Instant{} + std::chrono::seconds(1000), WallTime{} + std::chrono::hours(500000)};
  std::vector<control::PeerInfo> map;
};

void BM_FullWalkPerDelta(benchmark::State& state) {
  Fixture f(static_cast<std::size_t>(state.range(0)));
  std::int64_t i = 0;
  for (auto _ : state) {
    f.moving(i++);
    benchmark::DoNotOptimize(f.mesh.apply_peers(f.device, f.now, f.map, {}));
  }
  state.SetLabel("one peer changed, the whole map walked");
}

void BM_FollowTheDelta(benchmark::State& state) {
  Fixture f(static_cast<std::size_t>(state.range(0)));
  std::int64_t i = 0;
  for (auto _ : state) {
    const control::PeerInfo* changed = &f.moving(i++);
    benchmark::DoNotOptimize(f.mesh.apply_peer_changes(f.device, f.now, {changed}, {}, {}));
  }
  state.SetLabel("one peer changed, one peer applied");
}

BENCHMARK(BM_FullWalkPerDelta)->Arg(1000)->Arg(5000)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_FollowTheDelta)->Arg(1000)->Arg(5000)->Unit(benchmark::kMicrosecond);

}  // namespace
}  // namespace knit::agent

BENCHMARK_MAIN();
