// The fast path allocates nothing: packets of existing mappings (both ways, hairpinned, ICMP
// errors, and refused packets) go through without touching the heap. Counted by replacing the
// global operator new in this test program.
#include <gtest/gtest.h>

#include <atomic>
#include <cstdlib>
#include <new>

#include "nat/nat_engine.hpp"
#include "nat/packet_builder.hpp"
#include "nat/wire.hpp"

namespace {
std::atomic<std::size_t> g_allocations{0};
}  // namespace

void* operator new(std::size_t size) {
  ++g_allocations;
  if (void* p = std::malloc(size == 0 ? 1 : size)) return p;
  throw std::bad_alloc();
}
void operator delete(void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }

namespace knit::nat {
namespace {

Endpoint ep(const char* text) { return Endpoint::parse(text).value(); }

TEST(NatAllocation, ExistingFlowsNeverAllocate) {
  Config config;
  config.external_addresses = {IpAddress::parse("203.0.113.1").value()};
  config.filtering = Filtering::endpoint_independent;
  SeededRandom rng(1);
  NatEngine nat(config, rng);
  Instant now{};
  const Endpoint a = ep("10.0.0.2:41641");
  const Endpoint b = ep("10.0.0.3:41642");
  const Endpoint server = ep("198.51.100.1:51820");
  Bytes setup_a = make_udp(a, server);
  Bytes setup_b = make_udp(b, server);
  ASSERT_EQ(nat.outbound(now, setup_a).verdict, Verdict::forward);
  ASSERT_EQ(nat.outbound(now, setup_b).verdict, Verdict::forward);
  const Endpoint a_ext = summarize(setup_a).source;
  const Endpoint b_ext = summarize(setup_b).source;
  Bytes hairpin_setup = make_udp(a, b_ext);
  ASSERT_EQ(nat.outbound(now, hairpin_setup).verdict, Verdict::hairpin);

  const Bytes out = make_udp(a, server, Bytes(100, 1));
  const Bytes in = make_udp(server, a_ext, Bytes(100, 2));
  const Bytes hairpin = make_udp(a, b_ext, Bytes(100, 3));
  const Bytes error = make_icmp_error(server.address(), a_ext.address(), 3, 3,
                                      make_udp(a_ext, server, Bytes(4, 0)));
  const Bytes garbage(60, 0x45);
  std::array<std::uint8_t, kIcmpErrorMaxSize> reply{};
  Bytes packet(200);
  auto send = [&](const Bytes& original, bool outbound) {
    std::copy(original.begin(), original.end(), packet.begin());
    const std::span<std::uint8_t> span(packet.data(), original.size());
    return outbound ? nat.outbound(now, span, reply) : nat.inbound(now, span, reply);
  };
  const std::size_t before = g_allocations.load();
  for (int i = 0; i < 10000; ++i) {
    now += std::chrono::milliseconds(10);
    ASSERT_EQ(send(out, true).verdict, Verdict::forward);
    ASSERT_EQ(send(in, false).verdict, Verdict::forward);
    ASSERT_EQ(send(hairpin, true).verdict, Verdict::hairpin);
    ASSERT_EQ(send(error, false).verdict, Verdict::forward);
    ASSERT_EQ(send(garbage, false).verdict, Verdict::drop);
  }
  EXPECT_EQ(g_allocations.load() - before, 0u);
}

}  // namespace
}  // namespace knit::nat
