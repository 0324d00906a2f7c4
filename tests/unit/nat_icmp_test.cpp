// RFC 5508: ICMP query identifiers mapped like ports, ICMP errors translated both ways (and
// hairpinned) only when they quote a live session, with every checksum right.
#include <gtest/gtest.h>

#include "nat/nat_engine.hpp"
#include "nat/packet_builder.hpp"
#include "nat/wire.hpp"

namespace knit::nat {
namespace {

using namespace std::chrono_literals;

Endpoint ep(const char* text) { return Endpoint::parse(text).value(); }
IpAddress ip(const char* text) { return IpAddress::parse(text).value(); }

const IpAddress kPublic = ip("203.0.113.1");
const IpAddress kRouter = ip("192.0.2.254");  // a router on the path outside
const Endpoint kHost = ep("10.0.0.2:5000");
const Endpoint kServer = ep("198.51.100.1:3478");
const Endpoint kExternal = ep("203.0.113.1:5000");

struct Nat {
  explicit Nat(Filtering filtering = Filtering::address_and_port_dependent)
      : rng(1), engine(make(filtering), rng) {}
  static Config make(Filtering filtering) {
    Config c;
    c.external_addresses = {kPublic};
    c.filtering = filtering;
    return c;
  }
  Result out(Bytes& p) { return engine.outbound(now, p); }
  Result in(Bytes& p) { return engine.inbound(now, p); }
  SeededRandom rng;
  NatEngine engine;
  Instant now{};
};

TEST(NatIcmpQuery, Rfc5508Req1EchoIdentifierMappedLikeAPort) {
  Nat nat;
  Bytes a =
      make_icmp_query(ip("10.0.0.2"), kServer.address(), kIcmpEchoRequest, 77, 1, Bytes(56, 1));
  Bytes b =
      make_icmp_query(ip("10.0.0.3"), kServer.address(), kIcmpEchoRequest, 77, 1, Bytes(56, 2));
  ASSERT_EQ(nat.out(a).verdict, Verdict::forward);
  ASSERT_EQ(nat.out(b).verdict, Verdict::forward);
  EXPECT_TRUE(verify_checksums(a).all());
  EXPECT_TRUE(verify_checksums(b).all());
  const Endpoint ea = summarize(a).source;
  const Endpoint eb = summarize(b).source;
  EXPECT_EQ(ea, Endpoint(kPublic, 77));  // preserved
  EXPECT_EQ(eb.address(), kPublic);
  EXPECT_NE(eb.port(), 77);  // clash: another identifier
  // Each reply goes back to its own host with its own identifier.
  Bytes ra =
      make_icmp_query(kServer.address(), kPublic, kIcmpEchoReply, ea.port(), 1, Bytes(56, 1));
  Bytes rb =
      make_icmp_query(kServer.address(), kPublic, kIcmpEchoReply, eb.port(), 1, Bytes(56, 2));
  ASSERT_EQ(nat.in(ra).verdict, Verdict::forward);
  ASSERT_EQ(nat.in(rb).verdict, Verdict::forward);
  EXPECT_TRUE(verify_checksums(ra).all());
  EXPECT_TRUE(verify_checksums(rb).all());
  EXPECT_EQ(summarize(ra).destination, Endpoint(ip("10.0.0.2"), 77));
  EXPECT_EQ(summarize(rb).destination, Endpoint(ip("10.0.0.3"), 77));
  // A reply from someone never pinged is filtered (APDF); timestamp queries work alike.
  Bytes stray = make_icmp_query(ip("192.0.2.9"), kPublic, kIcmpEchoReply, 77, 1);
  EXPECT_EQ(nat.in(stray).reason, DropReason::filtered);
  Bytes ts =
      make_icmp_query(ip("10.0.0.2"), kServer.address(), kIcmpTimestampRequest, 5, 1, Bytes(12, 0));
  EXPECT_EQ(nat.out(ts).verdict, Verdict::forward);
}

TEST(NatIcmpQuery, InboundRequestsAreForTheNatItself) {
  Nat nat(Filtering::endpoint_independent);
  Bytes ping = make_icmp_query(kServer.address(), kPublic, kIcmpEchoRequest, 77, 1);
  EXPECT_EQ(nat.in(ping).reason, DropReason::no_mapping);
  Bytes reply = make_icmp_query(ip("10.0.0.2"), kServer.address(), kIcmpEchoReply, 77, 1);
  EXPECT_EQ(nat.out(reply).reason, DropReason::no_mapping);
}

// The packet X sent, as it left the NAT, and an error about it from `from`.
struct Sent {
  Bytes outside;  // as translated
};

Sent send_udp(Nat& nat, std::size_t payload = 20) {
  Bytes p = make_udp(kHost, kServer, Bytes(payload, 0x42));
  EXPECT_EQ(nat.out(p).verdict, Verdict::forward);
  return Sent{p};
}

TEST(NatIcmpError, Rfc5508Req4InboundErrorTranslatedWithEveryChecksum) {
  for (const bool whole_quote : {false, true}) {
    SCOPED_TRACE(whole_quote);
    Nat nat;
    const Sent sent = send_udp(nat);
    // A router on the way says "time exceeded", quoting the whole datagram or 8 bytes of it.
    Bytes error = make_icmp_error(kRouter, kPublic, kIcmpTimeExceeded, 0, sent.outside,
                                  whole_quote ? sent.outside.size() : 0);
    ASSERT_EQ(nat.in(error).verdict, Verdict::forward);
    const ChecksumReport report = verify_checksums(error);
    EXPECT_TRUE(report.ip);
    EXPECT_TRUE(report.transport);  // ICMP
    EXPECT_TRUE(report.quoted_ip);
    EXPECT_TRUE(report.quoted_transport);  // quoted UDP (checked when the whole is quoted)
    const PacketSummary outer = summarize(error);
    EXPECT_EQ(outer.source.address(), kRouter);
    EXPECT_EQ(outer.destination.address(), kHost.address());
    const PacketSummary quoted = summarize(error, true);
    EXPECT_EQ(quoted.source, kHost);  // what X sent, as X knows it
    EXPECT_EQ(quoted.destination, kServer);
  }
}

TEST(NatIcmpError, Rfc5508Req4InboundErrorAboutTcpAndEcho) {
  Nat nat;
  Bytes syn = make_tcp(ep("10.0.0.2:40000"), ep("198.51.100.1:443"), kTcpSyn);
  ASSERT_EQ(nat.out(syn).verdict, Verdict::forward);
  for (const std::size_t quote : {std::size_t{0}, syn.size()}) {
    Bytes error =
        make_icmp_error(kServer.address(), kPublic, kIcmpDestinationUnreachable, 3, syn, quote);
    ASSERT_EQ(nat.in(error).verdict, Verdict::forward);
    EXPECT_TRUE(verify_checksums(error).all()) << quote;
    EXPECT_EQ(summarize(error, true).source, ep("10.0.0.2:40000"));
  }
  Bytes ping =
      make_icmp_query(ip("10.0.0.3"), kServer.address(), kIcmpEchoRequest, 9, 1, Bytes(8, 1));
  ASSERT_EQ(nat.out(ping).verdict, Verdict::forward);
  Bytes error = make_icmp_error(kRouter, kPublic, kIcmpTimeExceeded, 0, ping, ping.size());
  ASSERT_EQ(nat.in(error).verdict, Verdict::forward);
  EXPECT_TRUE(verify_checksums(error).all());
  EXPECT_EQ(summarize(error).destination.address(), ip("10.0.0.3"));
  EXPECT_EQ(summarize(error, true).source, Endpoint(ip("10.0.0.3"), 9));
}

TEST(NatIcmpError, Rfc5508Req3ErrorsWithBadChecksumsDropped) {
  Nat nat;
  const Sent sent = send_udp(nat);
  Bytes bad_outer = make_icmp_error(kRouter, kPublic, kIcmpTimeExceeded, 0, sent.outside);
  bad_outer[kIpv4MinHeader + 2] ^= 0x10;  // ICMP checksum
  EXPECT_EQ(nat.in(bad_outer).reason, DropReason::bad_checksum);
  Bytes quoted = sent.outside;
  quoted[kIpv4OffChecksum] ^= 0x01;  // the quoted header's checksum
  Bytes bad_inner = make_icmp_error(kRouter, kPublic, kIcmpTimeExceeded, 0, quoted);
  EXPECT_EQ(nat.in(bad_inner).reason, DropReason::bad_checksum);
  EXPECT_EQ(nat.engine.stats().icmp_errors_translated, 0u);
}

TEST(NatIcmpError, Rfc5508Req4ErrorsQuotingNoSessionDropped) {
  Nat nat;
  const Sent sent = send_udp(nat);
  // Quotes a flow to another server: no such session.
  Bytes other = make_udp(kExternal, ep("198.51.100.99:53"));
  Bytes e1 = make_icmp_error(kRouter, kPublic, kIcmpDestinationUnreachable, 1, other);
  EXPECT_EQ(nat.in(e1).reason, DropReason::icmp_error_no_match);
  // Quotes our flow but arrives at another address than the quoted source: forged.
  Bytes e2 = make_icmp_error(kRouter, kPublic, kIcmpDestinationUnreachable, 1,
                             make_udp(ep("203.0.113.9:5000"), kServer));
  EXPECT_EQ(nat.in(e2).reason, DropReason::icmp_error_no_match);
  // Quotes an echo *reply* "we sent": replies are never translated outward.
  Bytes e3 = make_icmp_error(kRouter, kPublic, kIcmpDestinationUnreachable, 1,
                             make_icmp_query(kPublic, kServer.address(), kIcmpEchoReply, 5000, 1));
  EXPECT_EQ(nat.in(e3).reason, DropReason::icmp_error_no_match);
  // Garbage quoted (its "header" fails its checksum), and a quote cut short: dropped, and
  // nothing in the table changed.
  Bytes e4 = make_icmp_error(kRouter, kPublic, kIcmpDestinationUnreachable, 1, Bytes(28, 0x45));
  EXPECT_EQ(nat.in(e4).reason, DropReason::bad_checksum);
  Bytes e5 = make_icmp_error(kRouter, kPublic, kIcmpDestinationUnreachable, 1, sent.outside, 24);
  EXPECT_EQ(nat.in(e5).reason, DropReason::malformed);
  EXPECT_EQ(nat.engine.stats().sessions_live, 1u);
}

TEST(NatIcmpError, Rfc5508Req5OutboundErrorTranslated) {
  Nat nat(Filtering::endpoint_independent);
  ASSERT_EQ(send_udp(nat).outside.empty(), false);
  // Someone sends to X's mapping; X answers "port unreachable".
  Bytes probe = make_udp(ep("192.0.2.50:7777"), kExternal, Bytes(10, 7));
  ASSERT_EQ(nat.in(probe).verdict, Verdict::forward);  // as X received it
  Bytes error = make_icmp_error(kHost.address(), ip("192.0.2.50"), kIcmpDestinationUnreachable,
                                kIcmpCodePortUnreachable, probe, probe.size());
  ASSERT_EQ(nat.out(error).verdict, Verdict::forward);
  EXPECT_TRUE(verify_checksums(error).all());
  const PacketSummary outer = summarize(error);
  EXPECT_EQ(outer.source.address(), kPublic);  // no inside address leaks
  EXPECT_EQ(outer.destination.address(), ip("192.0.2.50"));
  const PacketSummary quoted = summarize(error, true);
  EXPECT_EQ(quoted.source, ep("192.0.2.50:7777"));
  EXPECT_EQ(quoted.destination, kExternal);  // the packet as the remote sent it
  // From an inside router about the same packet: translated the same way.
  Bytes ttl = make_icmp_error(ip("10.0.0.1"), ip("192.0.2.50"), kIcmpTimeExceeded, 0, probe);
  ASSERT_EQ(nat.out(ttl).verdict, Verdict::forward);
  EXPECT_EQ(summarize(ttl).source.address(), kPublic);
  EXPECT_TRUE(verify_checksums(ttl).all());
  // About nothing we know: dropped.
  Bytes unknown = make_icmp_error(kHost.address(), ip("192.0.2.50"), 3, 3,
                                  make_udp(ep("192.0.2.50:1"), ep("10.0.0.2:9")));
  EXPECT_EQ(nat.out(unknown).reason, DropReason::icmp_error_no_match);
}

TEST(NatIcmpError, Rfc5508Req6ErrorsNeitherRefreshNorDelete) {
  Nat nat;
  const Sent sent = send_udp(nat);
  const auto before = nat.engine.find_session(Protocol::udp, kHost, kServer);
  ASSERT_TRUE(before);
  nat.now += 100s;
  for (int i = 0; i < 5; ++i) {
    Bytes error =
        make_icmp_error(kServer.address(), kPublic, kIcmpDestinationUnreachable, 3, sent.outside);
    ASSERT_EQ(nat.in(error).verdict, Verdict::forward);
  }
  const auto after = nat.engine.find_session(Protocol::udp, kHost, kServer);
  ASSERT_TRUE(after);
  EXPECT_EQ(after->expires, before->expires);
  nat.now = before->expires;
  Bytes late =
      make_icmp_error(kServer.address(), kPublic, kIcmpDestinationUnreachable, 3, sent.outside);
  EXPECT_EQ(nat.in(late).reason, DropReason::icmp_error_no_match);  // it expired on time
}

TEST(NatIcmpError, Rfc5508Req7HairpinnedErrors) {
  Nat nat(Filtering::endpoint_independent);
  const Endpoint a = ep("10.0.0.2:4000");
  const Endpoint b = ep("10.0.0.3:6000");
  // B has a mapping (it talked to a server); A sends to B's external endpoint.
  Bytes b_out = make_udp(b, kServer);
  ASSERT_EQ(nat.out(b_out).verdict, Verdict::forward);
  const Endpoint b_external = summarize(b_out).source;
  Bytes to_b = make_udp(a, b_external, Bytes(16, 3));
  ASSERT_EQ(nat.out(to_b).verdict, Verdict::hairpin);
  const Endpoint a_external = summarize(to_b).source;
  EXPECT_EQ(summarize(to_b).destination, b);
  // B answers with port unreachable about what it received.
  Bytes error = make_icmp_error(b.address(), a_external.address(), kIcmpDestinationUnreachable,
                                kIcmpCodePortUnreachable, to_b, to_b.size());
  ASSERT_EQ(nat.out(error).verdict, Verdict::hairpin);
  EXPECT_TRUE(verify_checksums(error).all());
  EXPECT_EQ(summarize(error).destination.address(), a.address());
  EXPECT_EQ(summarize(error).source.address(), kPublic);
  EXPECT_EQ(summarize(error, true).source, a);                // what A sent...
  EXPECT_EQ(summarize(error, true).destination, b_external);  // ...to where A sent it
}

}  // namespace
}  // namespace knit::nat
