// A PacketFilter on a manual clock for the agent's filter tests: this node is 100.64.0.1,
// `out`/`in` run one packet through the outbound or inbound side and return the bytes passed
// on (nullopt when the filter drops it). Tests set shields, forwards and routes on `filter`.
#pragma once

#include <optional>

#include "agent/packet_filter.hpp"
#include "base/random.hpp"

namespace knit::testing {

struct FilterHarness {
  FilterHarness() : rng(3), filter(rng) { filter.set_mesh_address(IpAddress::parse("100.64.0.1").value()); }
  std::optional<Bytes> out(Bytes packet) { return pass(filter.outbound(now, packet), packet); }
  std::optional<Bytes> in(Bytes packet) { return pass(filter.inbound(now, packet), packet); }

  SeededRandom rng;
  agent::PacketFilter filter;
  Instant now{};

 private:
  static std::optional<Bytes> pass(std::size_t n, Bytes& packet) {
    if (n == 0) return std::nullopt;
    packet.resize(n);
    return packet;
  }
};

}  // namespace knit::testing
