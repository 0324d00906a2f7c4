// The STUN server core: RFC 8489 answers, RFC 5780 CHANGE-REQUEST / RESPONSE-PORT / PADDING,
// RFC 3489 clients (answered the way coturn answers them: compare tests/vectors/stun), 420s and
// counted drops.
#include <gtest/gtest.h>

#include <cstring>

#include "base/random.hpp"
#include "punch/stun/responder.hpp"
#include "punch_stun_vectors.hpp"

namespace knit::punch {
namespace {

using testing::stun_vector;

Endpoint ep(const char* text) { return Endpoint::parse(text).value(); }
IpAddress ip(const char* text) { return IpAddress::parse(text).value(); }

StunAddressGroup full_group() {
  return {.primary = ep("192.0.2.1:3478"), .alternate_ip = ip("192.0.2.2"), .alternate_port = 3479};
}

StunMessage parse_reply(const StunReply& r) {
  StunMessage m;
  EXPECT_EQ(parse_stun(r.datagram, m), StunError::ok);
  return m;
}

std::vector<std::uint16_t> attribute_types(ByteSpan b) {
  std::vector<std::uint16_t> out;
  for (std::size_t off = 20; off + 4 <= b.size();) {
    out.push_back(load_be16(b.data() + off));
    off += 4 + ((load_be16(b.data() + off + 2) + 3) & ~3u);
  }
  return out;
}

TEST(StunResponder, PlainBinding) {
  StunResponder r(full_group(), {.software = "knit-stun test"});
  const Endpoint client = ep("203.0.113.5:40000");
  StunTransactionId id{1, 2, 3};
  const auto reply = r.handle(client, ep("192.0.2.1:3478"), build_binding_request(id));
  ASSERT_TRUE(reply);
  EXPECT_EQ(reply->from, ep("192.0.2.1:3478"));
  EXPECT_EQ(reply->to, client);
  const StunMessage m = parse_reply(*reply);
  EXPECT_EQ(m.type, stun::kBindingSuccess);
  EXPECT_EQ(m.transaction_id(), id);
  EXPECT_EQ(m.xor_mapped, client);
  EXPECT_EQ(m.mapped, client);
  EXPECT_EQ(m.response_origin, ep("192.0.2.1:3478"));
  EXPECT_EQ(m.other_address, ep("192.0.2.2:3479"));
  EXPECT_EQ(m.software, "knit-stun test");
  EXPECT_TRUE(m.has_fingerprint);  // the request had one
  EXPECT_EQ(r.counters().answered, 1u);
}

TEST(StunResponder, ChangeRequestFromEverySocket) {
  StunResponder r(full_group());
  const Endpoint client = ep("203.0.113.5:40000");
  struct Case {
    const char* local;
    std::uint8_t flags;
    const char* from;
  };
  const Case cases[] = {
      {"192.0.2.1:3478", 0, "192.0.2.1:3478"}, {"192.0.2.1:3478", 6, "192.0.2.2:3479"},
      {"192.0.2.1:3478", 4, "192.0.2.2:3478"}, {"192.0.2.1:3478", 2, "192.0.2.1:3479"},
      {"192.0.2.2:3479", 6, "192.0.2.1:3478"}, {"192.0.2.2:3479", 2, "192.0.2.2:3478"},
      {"192.0.2.1:3479", 4, "192.0.2.2:3479"}, {"192.0.2.2:3478", 6, "192.0.2.1:3479"},
  };
  for (const auto& c : cases) {
    const auto reply = r.handle(client, ep(c.local), build_binding_request({}, {.change_flags = c.flags}));
    ASSERT_TRUE(reply) << c.local << " " << int(c.flags);
    EXPECT_EQ(reply->from, ep(c.from)) << c.local << " " << int(c.flags);
    const StunMessage m = parse_reply(*reply);
    EXPECT_EQ(m.response_origin, ep(c.from));
    EXPECT_EQ(m.xor_mapped, client);
    // OTHER-ADDRESS is the group's alternate pair from every socket (as coturn answers).
    EXPECT_EQ(m.other_address, ep("192.0.2.2:3479"));
  }
  EXPECT_EQ(r.counters().changed, 7u);
}

TEST(StunResponder, ChangeRequestWithoutAlternateIs420) {
  StunResponder none({.primary = ep("192.0.2.1:3478")});
  StunResponder port_only({.primary = ep("192.0.2.1:3478"), .alternate_port = 3479});
  const Endpoint client = ep("203.0.113.5:40000");
  for (std::uint8_t flags : {2, 4, 6}) {
    const auto reply = none.handle(client, ep("192.0.2.1:3478"), build_binding_request({}, {.change_flags = flags}));
    ASSERT_TRUE(reply);
    EXPECT_EQ(reply->from, ep("192.0.2.1:3478"));
    const StunMessage m = parse_reply(*reply);
    EXPECT_EQ(m.type, stun::kBindingError);
    ASSERT_TRUE(m.error_code);
    EXPECT_EQ(m.error_code->code, 420);
    EXPECT_EQ(m.unknown_attributes, std::vector<std::uint16_t>{stun::kChangeRequest});
  }
  // Flags 0 ask for nothing: a normal answer, without OTHER-ADDRESS.
  auto reply = none.handle(client, ep("192.0.2.1:3478"), build_binding_request({}, {.change_flags = 0}));
  ASSERT_TRUE(reply);
  EXPECT_FALSE(parse_reply(*reply).other_address);
  EXPECT_EQ(parse_reply(*reply).type, stun::kBindingSuccess);
  // One IP, two ports: port changes work, IP changes are refused.
  reply = port_only.handle(client, ep("192.0.2.1:3478"), build_binding_request({}, {.change_flags = 2}));
  ASSERT_TRUE(reply);
  EXPECT_EQ(reply->from, ep("192.0.2.1:3479"));
  reply = port_only.handle(client, ep("192.0.2.1:3478"), build_binding_request({}, {.change_flags = 4}));
  EXPECT_EQ(parse_reply(*reply).type, stun::kBindingError);
  EXPECT_EQ(none.counters().error_420, 3u);
}

TEST(StunResponder, PortOnlyServerAdvertisesItsOtherPort) {
  // One relay host, one address, two ports: OTHER-ADDRESS names A:q from either socket, so a
  // client can ask the other port and see whether its mapping varies by destination port.
  StunResponder port_only({.primary = ep("192.0.2.1:3478"), .alternate_port = 3479});
  const Endpoint client = ep("203.0.113.5:40000");
  for (const char* local : {"192.0.2.1:3478", "192.0.2.1:3479"}) {
    const auto reply = port_only.handle(client, ep(local), build_binding_request({}, {}));
    ASSERT_TRUE(reply);
    const StunMessage m = parse_reply(*reply);
    EXPECT_EQ(m.type, stun::kBindingSuccess);
    EXPECT_EQ(m.other_address, ep("192.0.2.1:3479"));
    EXPECT_EQ(m.response_origin, ep(local));
  }
}

TEST(StunResponder, UnknownRequiredAttributeIs420) {
  StunResponder r(full_group());
  StunBuilder b(stun::kBindingRequest, raw_id_of({9}));
  b.add_u32(0x0777, 0);
  b.add_u32(0x7001, 0);
  b.add_u32(0xC001, 0);  // optional: ignored
  const auto reply = r.handle(ep("203.0.113.5:1"), ep("192.0.2.1:3478"), b.finish(false));
  ASSERT_TRUE(reply);
  const StunMessage m = parse_reply(*reply);
  ASSERT_TRUE(m.error_code);
  EXPECT_EQ(m.error_code->code, 420);
  EXPECT_EQ(m.unknown_attributes, (std::vector<std::uint16_t>{0x0777, 0x7001}));
}

TEST(StunResponder, ClassicClientLikeCoturn) {
  StunResponder r(full_group(), {.software = "knit-stun"});
  const Bytes req = stun_vector("stunclient_3489_request");  // change-IP
  const auto reply = r.handle(ep("192.0.2.10:29900"), ep("192.0.2.1:3478"), req);
  ASSERT_TRUE(reply);
  EXPECT_EQ(reply->from, ep("192.0.2.2:3478"));
  // Same header id and attribute layout as coturn's answer to the same client.
  const Bytes coturn = stun_vector("coturn_3489_response");
  EXPECT_EQ(attribute_types(reply->datagram), attribute_types(coturn));
  EXPECT_EQ(0, std::memcmp(reply->datagram.data() + 4, req.data() + 4, 16));
  StunMessage m;
  ASSERT_EQ(parse_stun(reply->datagram, m, {.allow_classic = true}), StunError::bad_cookie);  // a response
  // Read it as the classic client does.
  Bytes as_request = reply->datagram;
  store_be16(as_request.data(), stun::kBindingRequest);
  ASSERT_EQ(parse_stun(as_request, m, {.allow_classic = true}), StunError::ok);
  EXPECT_EQ(m.mapped, ep("192.0.2.10:29900"));
  EXPECT_EQ(m.source_address, ep("192.0.2.2:3478"));
  EXPECT_EQ(m.changed_address, ep("192.0.2.2:3479"));
  EXPECT_EQ(m.software.size() % 4, 0u);  // SERVER padded with NULs for RFC 3489 parsers
  EXPECT_EQ(r.counters().classic, 1u);

  StunResponder strict(full_group(), {.answer_classic = false});
  EXPECT_FALSE(strict.handle(ep("192.0.2.10:29900"), ep("192.0.2.1:3478"), req));
  EXPECT_EQ(strict.counters().drop_classic, 1u);
}

TEST(StunResponder, ResponsePortAndPadding) {
  StunResponder r(full_group());
  // coturn's own client: CHANGE-REQUEST ip+port and RESPONSE-PORT 40503.
  auto reply = r.handle(ep("192.0.2.10:40502"), ep("192.0.2.1:3478"), stun_vector("coturn_5780_response_port_request"));
  ASSERT_TRUE(reply);
  EXPECT_EQ(reply->to, ep("192.0.2.10:40503"));
  EXPECT_EQ(reply->from, ep("192.0.2.2:3479"));
  EXPECT_EQ(parse_reply(*reply).xor_mapped, ep("192.0.2.10:40502"));
  // PADDING: the answer is padded too, but never beyond a 1472-byte datagram or the request.
  const Bytes padded = stun_vector("coturn_5780_padding_request");
  reply = r.handle(ep("192.0.2.10:40503"), ep("192.0.2.1:3478"), padded);
  ASSERT_TRUE(reply);
  EXPECT_GT(reply->datagram.size(), 1400u);
  EXPECT_LE(reply->datagram.size(), stun::kMaxBuiltMessage);
  EXPECT_GT(parse_reply(*reply).padding_size, 0u);
}

TEST(StunResponder, DropsAreCounted) {
  StunResponder r(full_group());
  const Endpoint c = ep("203.0.113.5:1"), l = ep("192.0.2.1:3478");
  Bytes wg(148, 0);
  wg[0] = 1;
  EXPECT_FALSE(r.handle(c, l, wg));
  EXPECT_FALSE(r.handle(c, l, Bytes{}));
  Bytes req = build_binding_request({}, {.software = "abcd"});
  req[25] ^= 1;
  EXPECT_FALSE(r.handle(c, l, req));  // bad fingerprint
  StunBuilder resp(stun::kBindingSuccess, raw_id_of({}));
  EXPECT_FALSE(r.handle(c, l, resp.finish(false)));
  StunBuilder ind(stun::kBindingIndication, raw_id_of({}));
  EXPECT_FALSE(r.handle(c, l, ind.finish(false)));
  StunBuilder alloc(0x0003, raw_id_of({}));  // TURN Allocate
  EXPECT_FALSE(r.handle(c, l, alloc.finish(false)));
  StunBuilder bad(stun::kBindingRequest, raw_id_of({}));
  bad.add_u32(stun::kResponsePort, 0);
  EXPECT_FALSE(r.handle(c, l, bad.finish(false)));
  const auto& k = r.counters();
  EXPECT_EQ(k.drop_not_stun, 2u);
  EXPECT_EQ(k.drop_bad_fingerprint, 1u);
  EXPECT_EQ(k.drop_not_request, 2u);
  EXPECT_EQ(k.drop_method, 1u);
  EXPECT_EQ(k.drop_bad_port, 1u);
  EXPECT_EQ(k.drops(), 7u);
  EXPECT_EQ(k.answered, 0u);
  // Fuzz: nothing crashes, and an answer is only ever sent back to the requester's IP, never
  // larger than kMaxBuiltMessage.
  SeededRandom rng(5);
  const Bytes seed = build_binding_request({}, {.change_flags = 6, .software = "s", .fingerprint = false});
  for (int i = 0; i < 50000; ++i) {
    Bytes b = seed;
    for (int k2 = 0; k2 < 3; ++k2) b[rng.uniform(static_cast<std::uint32_t>(b.size()))] = static_cast<std::uint8_t>(rng.uniform(256));
    if (auto rep = r.handle(c, l, b)) {
      EXPECT_EQ(rep->to.address(), c.address());
      EXPECT_LE(rep->datagram.size(), stun::kMaxBuiltMessage);
    }
  }
  std::printf("  fuzz: answered %llu, 420 %llu, dropped %llu\n", (unsigned long long)r.counters().answered,
              (unsigned long long)r.counters().error_420, (unsigned long long)r.counters().drops());
}

TEST(StunResponder, Ipv6AndWildcard) {
  StunResponder v6({.primary = ep("[2001:db8::1]:3478"), .alternate_ip = ip("2001:db8::2"), .alternate_port = 3479});
  const Endpoint client = ep("[2001:db8::10]:5000");
  auto reply = v6.handle(client, ep("[2001:db8::1]:3478"), build_binding_request({}, {.change_flags = 6}));
  ASSERT_TRUE(reply);
  EXPECT_EQ(reply->from, ep("[2001:db8::2]:3479"));
  EXPECT_EQ(parse_reply(*reply).xor_mapped, client);
  // A wildcard socket: the local address comes from IP_PKTINFO; unknown → no RESPONSE-ORIGIN.
  StunResponder any({.primary = ep("0.0.0.0:3478")});
  reply = any.handle(ep("203.0.113.5:1"), ep("192.0.2.7:3478"), build_binding_request({}));
  ASSERT_TRUE(reply);
  EXPECT_EQ(parse_reply(*reply).response_origin, ep("192.0.2.7:3478"));
  reply = any.handle(ep("203.0.113.5:1"), ep("0.0.0.0:3478"), build_binding_request({}));
  ASSERT_TRUE(reply);
  EXPECT_FALSE(parse_reply(*reply).response_origin);
}

}  // namespace
}  // namespace knit::punch
