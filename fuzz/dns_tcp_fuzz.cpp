// libFuzzer: DNS over TCP from local stubs (dns/tcp_server.hpp) on hostile segments. The input
// is a script: raw IP packets, segments built from a few fields (optionally with the sequence
// and acknowledgment numbers the server expects next, so the fuzzer gets past the handshake),
// answers to the queries handed out, and clock steps. Properties: never a crash; the table
// stays bounded; every packet the server writes is one TCP segment from port 53 with a
// correct checksum; every query handed out is a whole DNS message within the size bounds.
#include <cstddef>
#include <cstdint>
#include <deque>
#include <map>

#include "base/checksum.hpp"
#include "base/random.hpp"
#include "dns/constants.hpp"
#include "dns/ip_packet.hpp"
#include "dns/tcp_server.hpp"
#include "fuzz/fuzz_util.hpp"

using namespace knit;

namespace {

struct Peer {
  std::uint32_t next_seq = 1000;  // what the server acknowledged last
  std::uint32_t server_end = 0;   // the end of what the server sent last
};

void check_output(const dns::TcpServer::Actions& out, std::map<std::uint16_t, Peer>& peers) {
  for (const Bytes& packet : out.packets) {
    const auto ip = dns::parse_ip_packet(packet);
    KNIT_FUZZ_CHECK(ip && ip->protocol == dns::kProtocolTcp && ip->payload.size() >= 20);
    const ByteSpan t = ip->payload;
    KNIT_FUZZ_CHECK(load_be16(t.data()) == dns::kDnsPort);
    std::uint64_t sum = checksum_accumulate(ByteSpan(ip->source.bytes(), ip->source.size()));
    sum = checksum_accumulate(ByteSpan(ip->destination.bytes(), ip->destination.size()), sum);
    sum += dns::kProtocolTcp + static_cast<std::uint64_t>(t.size());
    KNIT_FUZZ_CHECK(checksum_fold(checksum_accumulate(t, sum)) == 0xffff);
    const std::size_t offset = static_cast<std::size_t>(t[12] >> 4) * 4;
    KNIT_FUZZ_CHECK(offset >= 20 && offset <= t.size());
    Peer& peer = peers[load_be16(t.data() + 2)];
    const std::uint8_t flags = t[13];
    if (flags & 0x10) peer.next_seq = load_be32(t.data() + 8);
    peer.server_end = load_be32(t.data() + 4) + static_cast<std::uint32_t>(t.size() - offset) +
                      ((flags & 0x03) ? 1u : 0u);
  }
  for (const auto& q : out.queries) KNIT_FUZZ_CHECK(q.wire.size() >= 12 && q.wire.size() <= dns::kMaxQuerySize);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  fuzz::Reader in(data, size);
  SeededRandom rng(1);
  dns::TcpServer::Options options;
  options.max_connections = 4;
  dns::TcpServer server(options);
  Instant now = Instant{} + std::chrono::hours(1);
  const Endpoint server_v4 = *Endpoint::parse("100.100.100.100:53");
  const Endpoint server_v6 = *Endpoint::parse("[fd7a:115c:a1e0::6464:6464]:53");
  std::map<std::uint16_t, Peer> peers;  // by client port
  std::deque<dns::TcpServer::Query> pending;
  for (int step = 0; step < 256 && !in.empty(); ++step) {
    dns::TcpServer::Actions out;
    switch (in.u8() % 4) {
      case 0: {  // a raw packet
        const Bytes packet = in.bytes(in.u16() % 2048);
        server.on_segment(now, packet, rng, out);
        break;
      }
      case 1: {  // a segment from fields
        const std::uint8_t who = in.u8();
        const std::uint8_t mode = in.u8();
        const std::uint8_t flags = in.u8();
        std::uint32_t seq = in.u32();
        std::uint32_t ack = in.u32();
        const std::uint16_t window = in.u16();
        const Bytes payload = in.bytes(in.u16() % 1500);
        const std::uint16_t port = static_cast<std::uint16_t>(40000 + who % 6);
        Peer& peer = peers[port];
        if (mode & 1) seq = peer.next_seq;
        if (mode & 2) ack = peer.server_end;
        const bool v6 = (mode & 4) != 0;
        const Endpoint client = *Endpoint::parse(v6 ? "[fd7a:115c:a1e0::2]:1" : "100.64.0.2:1");
        Bytes tcp(20 + payload.size(), 0);
        store_be16(tcp.data(), port);
        store_be16(tcp.data() + 2, dns::kDnsPort);
        store_be32(tcp.data() + 4, seq);
        store_be32(tcp.data() + 8, ack);
        tcp[12] = 5 << 4;
        tcp[13] = flags;
        store_be16(tcp.data() + 14, window);
        std::copy(payload.begin(), payload.end(), tcp.begin() + 20);
        const Bytes packet = dns::build_ip_packet(client.address(), (v6 ? server_v6 : server_v4).address(),
                                                  dns::kProtocolTcp, tcp, 16);
        server.on_segment(now, packet, rng, out);
        break;
      }
      case 2: {  // the resolver answers the oldest query
        const std::size_t length = in.u16() % 3000;
        if (!pending.empty()) {
          server.on_answer(now, pending.front().client, Bytes(length, 0x5a), out);
          pending.pop_front();
        }
        break;
      }
      default:  // time passes
        now += std::chrono::milliseconds(in.u16());
        server.on_timer(now, out);
        break;
    }
    check_output(out, peers);
    for (auto& q : out.queries)
      if (pending.size() < 256) pending.push_back(std::move(q));
    KNIT_FUZZ_CHECK(server.connections() <= options.max_connections);
  }
  return 0;
}
