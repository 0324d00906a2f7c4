// knitd's packet filter (agent/packet_filter.hpp): packets from the TUN (outbound) and from
// peers (inbound), with shields, the mesh address and time changing between them, through the
// IPv4 NAT engine (host mode, a port forward) and the IPv6 tracker. Properties: what passes
// never grows; with shields up nothing unsolicited passes inbound unless the filter counts it
// as a flow, a forward or an ICMP error (no crash, no out-of-bounds: the sanitizers watch).
//
// Input records: op u8 | length u16 | packet[length]
//   op bit 0: 0 outbound, 1 inbound; bit 1: toggle shields first; bits 2-4: seconds to advance
//   (all set: 15 s, the filter's expiry interval, so bulk expiry runs); bit 5: drop and set the
//   mesh address again (the translator is rebuilt); bit 6: toggle the subnet router's SNAT for
//   the routed 10.77.0.0/24 (agent/router_nat.hpp, egress address 10.77.0.1).
#include <cstddef>
#include <cstdint>

#include "agent/packet_filter.hpp"
#include "base/random.hpp"
#include "fuzz/fuzz_util.hpp"

using namespace knit;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  fuzz::Reader in(data, size);
  SeededRandom rng(7);
  agent::PacketFilter::Limits limits;
  limits.max_mappings = 8;
  limits.max_sessions = 16;
  limits.max_ipv6_flows = 8;
  agent::PacketFilter filter(rng, limits);
  const auto mesh = IpAddress::parse("100.64.0.1");
  filter.set_mesh_address(mesh);
  const std::string why = filter.add_forward(
      {localapi::ForwardProtocol::tcp, 8080, Endpoint(*IpAddress::parse("192.168.7.10"), 80)});
  if (!why.empty()) {
    std::fprintf(stderr, "add_forward: %s\n", why.c_str());
    KNIT_FUZZ_CHECK(false);
  }
  const IpPrefix routed = *IpPrefix::parse("10.77.0.0/24");
  filter.set_routed_prefixes({routed});
  bool snat = false;
  Instant now{std::chrono::seconds(1000)};
  while (!in.empty()) {
    auto [op, packet] = fuzz::next_record(in, 1600);
    if (op & 2) filter.set_shields_up(!filter.shields_up());
    const unsigned advance = (op >> 2) & 7;
    now += std::chrono::seconds(advance == 7 ? 15 : advance);
    if (op & 0x20) {
      filter.set_mesh_address(std::nullopt);
      filter.set_mesh_address(mesh);
    }
    if (op & 0x40) {
      snat = !snat;
      filter.router_nat().set_egress(snat ? std::vector<agent::SnatEgress>{{routed, *IpAddress::parse("10.77.0.1")}}
                                          : std::vector<agent::SnatEgress>{});
    }
    const std::size_t before = packet.size();
    const std::size_t passed = (op & 1) ? filter.inbound(now, packet) : filter.outbound(now, packet);
    KNIT_FUZZ_CHECK(passed <= before);
  }
  (void)filter.counters();
  (void)filter.forwards();
  (void)filter.dump();
  return 0;
}
