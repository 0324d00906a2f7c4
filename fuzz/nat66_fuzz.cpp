// The IPv6 source NAPT (nat/nat66.hpp): packets both ways with time passing, into a small table
// and a small port range. Properties: the table never passes its bound; a packet translated
// outbound leaves with the external address and a port (or echo identifier) of the range (an
// inside host's ICMPv6 error: its quote's destination does); the mirrored reply to a translated TCP/UDP packet comes back to the original source and port.
//
// Input records: op u8 | length u16 | packet[length]; op bit 0: 0 outbound, 1 inbound;
// bits 1-3: seconds to advance first (all set: 10 minutes and expire()).
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>

#include "base/random.hpp"
#include "fuzz/fuzz_util.hpp"
#include "nat/nat66.hpp"

using namespace knit;
using knit::nat::Nat66;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  fuzz::Reader in(data, size);
  SeededRandom rng(size);
  Nat66::Config config{*IpAddress::parse("2001:db8:1::1")};
  config.port_min = 61000;
  config.port_max = 61007;
  config.max_sessions = 12;
  config.udp_timeout = std::chrono::seconds(30);
  config.tcp_transitory_timeout = std::chrono::seconds(20);
  config.icmp_timeout = std::chrono::seconds(10);
  Nat66 nat(config, rng);
  Instant now{std::chrono::seconds(1000)};
  while (!in.empty()) {
    auto [op, packet] = fuzz::next_record(in, 1600);
    const unsigned advance = (op >> 1) & 7;
    if (advance == 7) {
      now += std::chrono::minutes(10);
      nat.expire(now);
    } else {
      now += std::chrono::seconds(advance);
    }
    const Bytes before = packet;
    const auto outcome = (op & 1) ? nat.inbound(now, packet) : nat.outbound(now, packet);
    KNIT_FUZZ_CHECK(packet.size() == before.size());
    KNIT_FUZZ_CHECK(nat.stats().sessions_live <= config.max_sessions);
    if (outcome == Nat66::Outcome::dropped) {
      KNIT_FUZZ_CHECK(packet == before);  // a dropped packet is left as it came
      continue;
    }
    if (op & 1) continue;
    KNIT_FUZZ_CHECK(std::memcmp(&packet[8], config.external.bytes(), 16) == 0);
    const std::uint8_t next = packet[6];
    if (next == 58 && packet[40] >= 1 && packet[40] <= 4) {
      // An inside host's error about a translated reply: the quote now reads the external
      // address and a port (or echo identifier) of the range as its destination.
      KNIT_FUZZ_CHECK(packet.size() >= 48 + 40 + 8);
      KNIT_FUZZ_CHECK(std::memcmp(&packet[48 + 24], config.external.bytes(), 16) == 0);
      const std::size_t at = 48 + 40 + (packet[48 + 6] == 58 ? 4 : 2);
      const auto quoted_port = static_cast<std::uint16_t>(packet[at] << 8 | packet[at + 1]);
      KNIT_FUZZ_CHECK(quoted_port >= config.port_min && quoted_port <= config.port_max);
      continue;
    }
    const std::uint16_t port = static_cast<std::uint16_t>(packet[40 + (next == 58 ? 4 : 0)] << 8 |
                                                          packet[41 + (next == 58 ? 4 : 0)]);
    KNIT_FUZZ_CHECK(port >= config.port_min && port <= config.port_max);
    if (next != 6 && next != 17) continue;
    // The mirrored reply: addresses and ports swapped.
    Bytes reply = packet;
    std::swap_ranges(reply.begin() + 8, reply.begin() + 24, reply.begin() + 24);
    std::swap_ranges(reply.begin() + 40, reply.begin() + 42, reply.begin() + 42);
    if (next == 6) reply[53] = 0x10;  // a plain ACK
    if (nat.inbound(now, reply) != Nat66::Outcome::translated) {
      std::fprintf(stderr, "the reply to a translated flow was dropped\n");
      KNIT_FUZZ_CHECK(false);
    }
    KNIT_FUZZ_CHECK(std::memcmp(&reply[24], &before[8], 16) == 0);
    KNIT_FUZZ_CHECK(reply[42] == before[40] && reply[43] == before[41]);
  }
  return 0;
}
