// The NAT engine (nat/nat_engine.hpp), both directions: a sequence of packets from the inside
// and the outside, with time passing between them, into one engine whose NAT type, hairpinning
// and table bounds the input picks. Properties: every packet is accounted for exactly once;
// the tables stay within their bounds; a forwarded or hairpinned packet keeps every checksum
// valid when it arrived valid (incremental updates are right) and never grows; an ICMP error
// the engine writes is well-formed.
//
// Input: byte 0 config, then records: op u8 | length u16 | packet[length]
//   op bit 0: 0 outbound, 1 inbound; bits 1-3: seconds to advance first (bits 1-3 all set:
//   run expire() and drain take_timer_icmp); bit 4: fix the IPv4 header checksum first.
#include <cstddef>
#include <cstdint>
#include <vector>

#include "base/random.hpp"
#include "fuzz/fuzz_util.hpp"
#include "nat/checksum.hpp"
#include "nat/nat_engine.hpp"
#include "nat/packet_builder.hpp"
#include "nat/wire.hpp"

using namespace knit;
using namespace knit::nat;

namespace {

void fix_ip_checksum(Bytes& packet) {
  if (packet.size() < 20 || (packet[0] >> 4) != 4) return;
  const std::size_t ihl = static_cast<std::size_t>(packet[0] & 0x0f) * 4;
  if (ihl < 20 || ihl > packet.size()) return;
  packet[10] = packet[11] = 0;
  const std::uint16_t sum = internet_checksum(ByteSpan(packet.data(), ihl));
  packet[10] = static_cast<std::uint8_t>(sum >> 8);
  packet[11] = static_cast<std::uint8_t>(sum);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  fuzz::Reader in(data, size);
  const std::uint8_t config_byte = in.u8();
  Config config;
  config.external_addresses = {*IpAddress::parse("203.0.113.1")};
  if (config_byte & 0x40) config.external_addresses.push_back(*IpAddress::parse("203.0.113.2"));
  config.mapping = static_cast<Mapping>(config_byte % 3);
  config.filtering = static_cast<Filtering>((config_byte / 3) % 3);
  config.hairpinning = (config_byte & 0x20) == 0;
  config.decrement_ttl = (config_byte & 0x80) == 0;
  config.inside_prefixes = {*IpPrefix::parse("10.0.0.0/8")};
  config.udp_timeout = std::chrono::seconds(30);
  config.tcp_transitory_timeout = std::chrono::seconds(20);
  config.icmp_timeout = std::chrono::seconds(10);
  config.max_mappings = 8;
  config.max_sessions = 16;
  config.max_held_syns = 4;
  config.max_fragment_flows = 4;
  if (config_byte & 0x10) {
    config.port_forwards = {PortForward{Protocol::udp, 5000, *IpAddress::parse("10.0.0.2"), 5000,
                                        std::nullopt}};
  }
  SeededRandom rng(config_byte);
  NatEngine engine(config, rng);

  Instant now{std::chrono::seconds(1000)};
  std::vector<std::uint8_t> reply(kIcmpErrorMaxSize);
  while (!in.empty()) {
    auto [op, packet] = fuzz::next_record(in, 1600);
    const unsigned advance = (op >> 1) & 7;
    if (advance == 7) {
      now += std::chrono::seconds(40);
      engine.expire(now);
      while (true) {
        const std::size_t n = engine.take_timer_icmp(reply);
        if (n == 0) break;
        KNIT_FUZZ_CHECK(n <= reply.size());
        KNIT_FUZZ_CHECK(verify_checksums(ByteSpan(reply.data(), n)).ip);
      }
    } else {
      now += std::chrono::seconds(advance);
    }
    if (op & 0x10) fix_ip_checksum(packet);
    const bool valid_before = !packet.empty() && verify_checksums(packet).all();
    const std::size_t before = packet.size();
    const Result r = (op & 1) ? engine.inbound(now, packet, reply) : engine.outbound(now, packet, reply);
    (void)to_string(r.verdict);
    (void)to_string(r.reason);
    switch (r.verdict) {
      case Verdict::forward:
      case Verdict::hairpin:
        KNIT_FUZZ_CHECK(r.length > 0 && r.length <= before);
        if (valid_before) {
          const ChecksumReport report = verify_checksums(ByteSpan(packet.data(), r.length));
          if (!report.all()) {
            std::fprintf(stderr, "checksums broken by translation: ip %d transport %d quoted %d/%d\n",
                         report.ip, report.transport, report.quoted_ip, report.quoted_transport);
            KNIT_FUZZ_CHECK(false);
          }
        }
        break;
      case Verdict::reply:
        KNIT_FUZZ_CHECK(r.reply_length > 0 && r.reply_length <= reply.size());
        KNIT_FUZZ_CHECK(verify_checksums(ByteSpan(reply.data(), r.reply_length)).ip);
        break;
      case Verdict::drop:
        KNIT_FUZZ_CHECK(r.reason != DropReason::none);
        break;
    }
    const Stats s = engine.stats();
    KNIT_FUZZ_CHECK(s.outbound_packets == s.forwarded_outbound + s.hairpinned + s.dropped_outbound +
                                              s.replied_outbound);
    KNIT_FUZZ_CHECK(s.inbound_packets == s.forwarded_inbound + s.dropped_inbound + s.replied_inbound);
    KNIT_FUZZ_CHECK(s.mappings_live <= config.max_mappings + config.port_forwards.size());
    KNIT_FUZZ_CHECK(s.sessions_live <= config.max_sessions);
  }
  (void)engine.dump(now);
  (void)engine.sessions();
  (void)engine.next_deadline();
  return 0;
}
