// The STUN codec against captured real answers (coturn, stund; see tests/vectors/stun/*.hex for
// where each came from), RFC 5769's sample, round-trips, a malformed-input table and a fuzz loop.
#include <gtest/gtest.h>

#include <cstring>
#include <map>

#include "base/random.hpp"
#include "punch/stun/message.hpp"
#include "punch_stun_vectors.hpp"

namespace knit::punch {
namespace {

using testing::stun_vector;

Endpoint ep(const char* text) { return Endpoint::parse(text).value(); }

StunMessage parse_ok(ByteSpan b, StunParseOptions o = {}) {
  StunMessage m;
  EXPECT_EQ(parse_stun(b, m, o), StunError::ok);
  return m;
}

TEST(StunCodec, CoturnResponseV4) {
  const Bytes req = stun_vector("coturn_5389_request_v4");
  const Bytes resp = stun_vector("coturn_5389_response_v4");
  ASSERT_EQ(resp.size(), 92u);
  EXPECT_TRUE(looks_like_stun(req));
  EXPECT_TRUE(looks_like_stun(resp));
  const StunMessage r = parse_ok(req);
  const StunMessage m = parse_ok(resp);
  EXPECT_EQ(m.message_class(), stun::MessageClass::success);
  EXPECT_EQ(m.method(), 1);
  EXPECT_EQ(m.transaction_id(), r.transaction_id());
  EXPECT_EQ(m.xor_mapped, ep("192.0.2.10:40502"));
  EXPECT_EQ(m.mapped, ep("192.0.2.10:40502"));
  EXPECT_EQ(m.response_origin, ep("192.0.2.1:3478"));
  EXPECT_EQ(m.other_address, ep("192.0.2.2:3479"));
  EXPECT_EQ(m.software, "Coturn-4.6.1 'Gorst'");
  EXPECT_FALSE(m.has_fingerprint);
  EXPECT_TRUE(m.unknown_required.empty());
}

TEST(StunCodec, CoturnChangedResponse) {
  const StunMessage m = parse_ok(stun_vector("coturn_5780_changed_response_v4"));
  EXPECT_EQ(m.reflexive(), ep("192.0.2.10:40502"));
  EXPECT_EQ(m.response_origin, ep("192.0.2.2:3479"));
  const StunMessage req = parse_ok(stun_vector("coturn_5780_response_port_request"));
  EXPECT_EQ(req.change_flags, stun::kChangeIp | stun::kChangePort);
  EXPECT_EQ(req.response_port, 40503);
  EXPECT_EQ(req.transaction_id(), m.transaction_id());
}

TEST(StunCodec, CoturnPaddingRequest) {
  const Bytes b = stun_vector("coturn_5780_padding_request");
  ASSERT_EQ(b.size(), 1532u);
  const StunMessage m = parse_ok(b);
  EXPECT_EQ(m.padding_size, 1500u);
  EXPECT_EQ(m.change_flags, 6);
}

TEST(StunCodec, CoturnResponseV6) {
  const StunMessage m = parse_ok(stun_vector("coturn_5389_response_v6"));
  EXPECT_EQ(m.xor_mapped, ep("[2001:db8::10]:39039"));
  EXPECT_EQ(m.mapped, ep("[2001:db8::10]:39039"));
  EXPECT_EQ(m.response_origin, ep("[2001:db8::1]:3478"));
  EXPECT_EQ(m.other_address, ep("[2001:db8::2]:3479"));
}

TEST(StunCodec, StundResponse) {
  const StunMessage m = parse_ok(stun_vector("stund_5389_response"));
  EXPECT_EQ(m.xor_mapped, ep("192.0.2.10:58331"));
  EXPECT_EQ(m.mapped, ep("192.0.2.10:58331"));
  EXPECT_EQ(m.source_address, ep("192.0.2.1:3478"));
  EXPECT_EQ(m.changed_address, ep("192.0.2.2:3479"));
  EXPECT_EQ(m.software.substr(0, 15), "Vovida.org 0.97");
}

TEST(StunCodec, ClassicMessages) {
  // Debian's stun client: no cookie, CHANGE-REQUEST change-IP.
  const Bytes req = stun_vector("stunclient_3489_request");
  EXPECT_FALSE(looks_like_stun(req));
  EXPECT_TRUE(looks_like_stun(req, true));
  StunMessage m;
  EXPECT_EQ(parse_stun(req, m), StunError::bad_cookie);
  m = parse_ok(req, {.allow_classic = true});
  EXPECT_TRUE(m.classic);
  EXPECT_EQ(m.change_flags, stun::kChangeIp);
  // Classic answers are only ever parsed by a server, which never accepts responses without a
  // cookie: the agent's demultiplexer must not take them for STUN.
  for (const char* name : {"coturn_3489_response", "stund_3489_response"}) {
    const Bytes resp = stun_vector(name);
    ASSERT_FALSE(resp.empty()) << name;
    EXPECT_FALSE(looks_like_stun(resp, true)) << name;
    EXPECT_EQ(parse_stun(resp, m, {.allow_classic = true}), StunError::bad_cookie) << name;
  }
}

TEST(StunCodec, Rfc5769SampleResponse) {
  // RFC 5769 §2.2: SOFTWARE, XOR-MAPPED-ADDRESS, MESSAGE-INTEGRITY, FINGERPRINT.
  const Bytes b = *from_hex(
      "0101003c2112a442b7e7a701bc34d686fa87dfae8022000b7465737420766563746f7220"
      "002000080001a147e112a643000800142b91f599fd9e90c38c7489f92af9ba53f06be7d7"
      "80280004c07d4c96");
  const StunMessage m = parse_ok(b);
  EXPECT_TRUE(m.has_fingerprint);
  EXPECT_EQ(m.xor_mapped, ep("192.0.2.1:32853"));
  EXPECT_EQ(m.software, "test vector");
  Bytes bad = b;
  bad[b.size() - 1] ^= 1;
  StunMessage x;
  EXPECT_EQ(parse_stun(bad, x), StunError::bad_fingerprint);
}

TEST(StunCodec, Crc32) {
  const std::string s = "123456789";
  EXPECT_EQ(stun_crc32({reinterpret_cast<const std::uint8_t*>(s.data()), s.size()}), 0xCBF43926u);
}

TEST(StunCodec, RequestRoundTrip) {
  StunTransactionId id{};
  for (std::size_t i = 0; i < id.size(); ++i) id[i] = static_cast<std::uint8_t>(i * 7 + 1);
  for (std::optional<std::uint8_t> change : {std::optional<std::uint8_t>{}, std::optional<std::uint8_t>{0},
                                              std::optional<std::uint8_t>{6}}) {
    for (bool fp : {false, true}) {
      const Bytes b = build_binding_request(id, {.change_flags = change, .software = "knit test", .fingerprint = fp});
      EXPECT_TRUE(looks_like_stun(b));
      const StunMessage m = parse_ok(b);
      EXPECT_EQ(m.type, stun::kBindingRequest);
      EXPECT_EQ(m.transaction_id(), id);
      EXPECT_EQ(m.change_flags, change);
      EXPECT_EQ(m.software, "knit test");
      EXPECT_EQ(m.has_fingerprint, fp);
      if (fp) {
        // Any flipped bit before the CRC is caught by the fingerprint (or the header checks).
        // (The FINGERPRINT's own type bytes are excluded: changed, it is just an unknown
        // optional attribute and the message an unsigned one.)
        for (std::size_t i = 20; i < b.size() - stun::kFingerprintSize; ++i) {
          Bytes c = b;
          c[i] ^= 0x10;
          StunMessage x;
          EXPECT_NE(parse_stun(c, x), StunError::ok) << i;
        }
      }
    }
  }
}

TEST(StunCodec, AddressRoundTripV4V6) {
  SeededRandom rng(7);
  for (int i = 0; i < 500; ++i) {
    StunTransactionId id;
    rng.fill(id);
    std::uint8_t a[16];
    rng.fill(a);
    const bool v6 = i % 2;
    const Endpoint e(v6 ? IpAddress::v6(a) : IpAddress::v4(a), static_cast<std::uint16_t>(rng.uniform(65536)));
    StunBuilder b(stun::kBindingSuccess, raw_id_of(id));
    b.add_xor_address(stun::kXorMappedAddress, e);
    b.add_address(stun::kMappedAddress, e);
    b.add_address(stun::kOtherAddress, e);
    const Bytes out = b.finish(i % 3 == 0);
    const StunMessage m = parse_ok(out);
    ASSERT_EQ(m.xor_mapped, e);
    ASSERT_EQ(m.mapped, e);
    ASSERT_EQ(m.other_address, e);
    // The XORed form differs from the plain one on the wire (the point of XOR-MAPPED-ADDRESS).
    EXPECT_NE(0, std::memcmp(out.data() + 24, out.data() + 24 + 4 + (v6 ? 20 : 8), v6 ? 20 : 8));
  }
}

TEST(StunCodec, ErrorAndUnknownAttributes) {
  StunTransactionId id{};
  StunBuilder b(stun::kBindingError, raw_id_of(id));
  b.add_error_code(420, "Unknown Attribute");
  b.add_unknown_attributes({0x0003, 0x7777, 0x0010});
  b.add_u32(0x7777, 1);  // an unknown comprehension-required attribute
  b.add_u32(0xC001, 1);  // an unknown optional one
  const StunMessage m = parse_ok(b.finish(true));
  ASSERT_TRUE(m.error_code);
  EXPECT_EQ(m.error_code->code, 420);
  EXPECT_EQ(m.error_code->reason, "Unknown Attribute");
  EXPECT_EQ(m.unknown_attributes, (std::vector<std::uint16_t>{0x0003, 0x7777, 0x0010}));
  EXPECT_EQ(m.unknown_required, std::vector<std::uint16_t>{0x7777});
}

TEST(StunCodec, Demultiplexing) {
  Bytes wg(148, 0);
  wg[0] = 1;
  EXPECT_FALSE(looks_like_stun(wg, true));
  Bytes wg_data(32, 0);
  wg_data[0] = 4;
  EXPECT_FALSE(looks_like_stun(wg_data, true));
  Bytes disco = {'K', 'N', 'I', 'T'};
  disco.resize(64, 0);
  EXPECT_FALSE(looks_like_stun(disco, true));
  StunTransactionId id{};
  Bytes req = build_binding_request(id);
  EXPECT_TRUE(looks_like_stun(req));
  req.push_back(0);  // length no longer matches
  EXPECT_FALSE(looks_like_stun(req));
}

// Numbered table of malformed messages: each must fail with exactly this error.
TEST(StunCodec, MalformedTable) {
  const std::string hdr_ok = "2112a442000102030405060708090a0b";
  struct Case {
    int n;
    std::string hex;
    StunError want;
  };
  const std::vector<Case> cases = {
      {1, "", StunError::too_short},
      {2, "0001000021", StunError::too_short},
      {3, "c0010000" + hdr_ok, StunError::not_stun},
      {4, "40010000" + hdr_ok, StunError::not_stun},
      {5, "00010002" + hdr_ok + "0000", StunError::bad_length},
      {6, "00010004" + hdr_ok, StunError::bad_length},
      {7, "00010000" + hdr_ok + "00000000", StunError::bad_length},
      {8, "000100002112a443000102030405060708090a0b", StunError::bad_cookie},
      {9, "01010000000000000000000000000000000000ff", StunError::bad_cookie},  // classic response
      {10, "01010004" + hdr_ok + "0020", StunError::bad_length},
      {11, "01010004" + hdr_ok + "00200008", StunError::truncated_attribute},
      {12, "01010008" + hdr_ok + "0020000500010203", StunError::truncated_attribute},
      {13, "0101000c" + hdr_ok + "002000080003000000000000", StunError::bad_address},  // family 3
      {14, "0101000c" + hdr_ok + "002000080002000000000000", StunError::bad_address},  // v6 in 8
      {15, "0101000c" + hdr_ok + "000100070001000000000000", StunError::bad_address},  // length 7
      {16, "01010008" + hdr_ok + "0001000400010000", StunError::bad_address},
      {17, "01010008" + hdr_ok + "0003000300000000", StunError::bad_attribute},  // CHANGE-REQUEST
      {18, "01010008" + hdr_ok + "0009000200000000", StunError::bad_attribute},  // ERROR-CODE short
      {19, "01010008" + hdr_ok + "0009000400000264", StunError::bad_attribute},  // 2xx, 100
      {20, "01010008" + hdr_ok + "8028000400000000", StunError::bad_fingerprint},
      {21, "01010010" + hdr_ok + "80280004000000000000000000000000", StunError::fingerprint_not_last},
      {22, "01010008" + hdr_ok + "8028000300000000", StunError::bad_attribute},
      {23, "01010008" + hdr_ok + "000a000300000000", StunError::bad_attribute},  // odd list
      {24, "01010008" + hdr_ok + "0027000200000000", StunError::bad_attribute},  // RESPONSE-PORT
      {25, "01010004" + hdr_ok + "ffff0004", StunError::truncated_attribute},
  };
  for (const auto& c : cases) {
    const auto b = from_hex(c.hex);
    ASSERT_TRUE(b) << "case " << c.n;
    StunMessage m;
    EXPECT_EQ(parse_stun(*b, m), c.want) << "case " << c.n << ": " << to_string(parse_stun(*b, m));
  }
}

// Random and mutated input: never a crash or an out-of-bounds read (run under ASan too), and
// whatever parses also passes looks_like_stun. The outcome counts are printed.
TEST(StunCodec, FuzzLoop) {
  SeededRandom rng(2024);
  const std::vector<Bytes> seeds = {stun_vector("coturn_5389_response_v4"), stun_vector("coturn_5389_response_v6"),
                                    stun_vector("stund_5389_response"), stun_vector("coturn_5780_padding_request"),
                                    build_binding_request(StunTransactionId{}, {.change_flags = 6, .software = "x"})};
  std::map<StunError, int> outcomes;
  for (int i = 0; i < 100000; ++i) {
    Bytes b;
    if (i % 4 == 0) {
      b.resize(rng.uniform(200));
      rng.fill(b);
    } else {
      b = seeds[rng.uniform(static_cast<std::uint32_t>(seeds.size()))];
      const int flips = 1 + static_cast<int>(rng.uniform(4));
      for (int k = 0; k < flips && !b.empty(); ++k) b[rng.uniform(static_cast<std::uint32_t>(b.size()))] ^= static_cast<std::uint8_t>(1 + rng.uniform(255));
      if (i % 7 == 0 && !b.empty()) b.resize(rng.uniform(static_cast<std::uint32_t>(b.size())));
    }
    StunMessage m;
    const StunError e = parse_stun(b, m, {.allow_classic = (i % 2) == 0});
    ++outcomes[e];
    if (e == StunError::ok) {
      EXPECT_TRUE(looks_like_stun(b, true));
      EXPECT_LE(m.unknown_required.size(), stun::kMaxUnknown);
      EXPECT_LE(m.software.size(), stun::kMaxText);
    }
  }
  for (const auto& [e, n] : outcomes) std::printf("  %-28s %d\n", std::string(to_string(e)).c_str(), n);
  EXPECT_GT(outcomes[StunError::ok], 0);
  EXPECT_GT(outcomes[StunError::bad_length], 0);
}

TEST(StunCodec, BuilderStaysBounded) {
  StunTransactionId id{};
  StunBuilder b(stun::kBindingSuccess, raw_id_of(id));
  const Bytes big(1000, 'a');
  b.add_bytes(stun::kSoftware, big);
  b.add_bytes(stun::kSoftware, big);  // does not fit: dropped, counted
  b.add_padding(5000);
  const Bytes out = b.finish(true);
  EXPECT_LE(out.size(), stun::kMaxBuiltMessage);
  EXPECT_EQ(b.dropped(), 1u);
  const StunMessage m = parse_ok(out);
  EXPECT_TRUE(m.has_fingerprint);
}

}  // namespace
}  // namespace knit::punch
