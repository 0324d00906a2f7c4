// PCP MAP/ANNOUNCE codec (RFC 6887): byte layout of requests, round trips through a fake
// server answer, and a numbered table of malformed or stranger answers that must be refused.
#include <gtest/gtest.h>

#include <functional>

#include "punch/portmap/pcp.hpp"
#include "tests/support/refusal_table.hpp"

namespace knit::punch {
namespace {

using namespace portmap;

IpAddress ip(const char* text) { return IpAddress::parse(text).value(); }

PcpMapRequest sample_request() {
  PcpMapRequest r;
  for (std::size_t i = 0; i < r.nonce.size(); ++i) r.nonce[i] = static_cast<std::uint8_t>(0xa0 + i);
  r.internal_port = 51820;
  r.suggested_port = 51820;
  r.lifetime_s = 7200;
  r.client = ip("10.0.0.2");
  return r;
}

// What a server answers to `request`: the request with R set, result, lifetime, epoch and the
// assigned endpoint (RFC 6887 §7.2, §11.1).
Bytes answer_for(const PcpMapRequest& request, PcpResult result, std::uint32_t lifetime,
                 std::uint32_t epoch, const Endpoint& assigned) {
  Bytes b = build_pcp_map_request(request);
  b[1] |= kPcpResponseBit;
  b[3] = static_cast<std::uint8_t>(result);
  store_be32(b.data() + 4, lifetime);
  store_be32(b.data() + 8, epoch);
  std::fill(b.begin() + 12, b.begin() + 24, 0);
  std::uint8_t* m = b.data() + kPcpHeaderSize;
  store_be16(m + 18, assigned.port());
  std::fill(m + 20, m + 30, 0);
  m[30] = 0xff;
  m[31] = 0xff;
  std::copy(assigned.address().bytes(), assigned.address().bytes() + 4, m + 32);
  return b;
}

TEST(PcpCodec, MapRequestLayout) {
  const PcpMapRequest r = sample_request();
  const Bytes b = build_pcp_map_request(r);
  ASSERT_EQ(b.size(), 60u);
  EXPECT_EQ(b[0], 2);     // version
  EXPECT_EQ(b[1], 1);     // R = 0, opcode MAP
  EXPECT_EQ(load_be32(b.data() + 4), 7200u);
  // Client address as ::ffff:10.0.0.2.
  for (int i = 8; i < 18; ++i) EXPECT_EQ(b[i], 0) << i;
  EXPECT_EQ(b[18], 0xff);
  EXPECT_EQ(b[19], 0xff);
  EXPECT_EQ(b[20], 10);
  EXPECT_EQ(b[23], 2);
  EXPECT_TRUE(std::equal(r.nonce.begin(), r.nonce.end(), b.begin() + 24));
  EXPECT_EQ(b[36], 17);  // UDP
  EXPECT_EQ(load_be16(b.data() + 40), 51820);
  EXPECT_EQ(load_be16(b.data() + 42), 51820);
  // No preferred external address: ::ffff:0.0.0.0.
  EXPECT_EQ(b[54], 0xff);
  EXPECT_EQ(load_be32(b.data() + 56), 0u);
}

TEST(PcpCodec, AnnounceRequestLayout) {
  const Bytes b = build_pcp_announce_request({ip("192.168.1.20")});
  ASSERT_EQ(b.size(), 24u);
  EXPECT_EQ(b[0], 2);
  EXPECT_EQ(b[1], 0);
  EXPECT_EQ(load_be32(b.data() + 4), 0u);
  EXPECT_EQ(b[23], 20);
}

TEST(PcpCodec, MapAnswerRoundTrip) {
  const PcpMapRequest r = sample_request();
  const Endpoint assigned(ip("198.18.7.1"), 40001);
  const Bytes b = answer_for(r, PcpResult::success, 3600, 1234, assigned);
  PcpAnswer a;
  ASSERT_EQ(parse_pcp_answer(b, r, a), PcpError::ok);
  EXPECT_EQ(a.result, PcpResult::success);
  EXPECT_EQ(a.lifetime_s, 3600u);
  EXPECT_EQ(a.epoch_s, 1234u);
  EXPECT_TRUE(a.has_map_data);
  EXPECT_EQ(a.external, assigned);
  EXPECT_TRUE(a.external.address().is_v4());
}

TEST(PcpCodec, MapAnswerWithOptionsIsAccepted) {
  const PcpMapRequest r = sample_request();
  Bytes b = answer_for(r, PcpResult::success, 60, 1, Endpoint(ip("198.18.0.1"), 1));
  // A PREFER_FAILURE-like option with 5 bytes of data padded to 8 (§7.3).
  const Bytes option = {0x02, 0, 0, 5, 1, 2, 3, 4, 5, 0, 0, 0};
  b.insert(b.end(), option.begin(), option.end());
  PcpAnswer a;
  EXPECT_EQ(parse_pcp_answer(b, r, a), PcpError::ok);
}

TEST(PcpCodec, ErrorAnswersCarryTheirResult) {
  const PcpMapRequest r = sample_request();
  PcpAnswer a;
  Bytes b = answer_for(r, PcpResult::not_authorized, 30, 9, Endpoint());
  ASSERT_EQ(parse_pcp_answer(b, r, a), PcpError::ok);
  EXPECT_EQ(a.result, PcpResult::not_authorized);
  EXPECT_EQ(a.lifetime_s, 30u);  // how long the error lasts
  EXPECT_EQ(pcp_failure(a.result).error, PortMapErrc::not_authorized);
  // UNSUPP_VERSION may come without opcode data.
  b.resize(kPcpHeaderSize);
  b[3] = static_cast<std::uint8_t>(PcpResult::unsupp_version);
  ASSERT_EQ(parse_pcp_answer(b, r, a), PcpError::ok);
  EXPECT_FALSE(a.has_map_data);
  EXPECT_EQ(pcp_failure(a.result).error, PortMapErrc::unsupported);
  EXPECT_EQ(to_string(PcpResult::address_mismatch), "ADDRESS_MISMATCH");
}

TEST(PcpCodec, AnnounceAnswer) {
  Bytes b(kPcpHeaderSize, 0);
  b[0] = 2;
  b[1] = kPcpResponseBit | kPcpOpAnnounce;
  store_be32(b.data() + 8, 77);
  PcpAnswer a;
  ASSERT_EQ(parse_pcp_announce_answer(b, a), PcpError::ok);
  EXPECT_EQ(a.epoch_s, 77u);
  // A MAP answer is not an ANNOUNCE answer.
  b[1] = kPcpResponseBit | kPcpOpMap;
  EXPECT_EQ(parse_pcp_announce_answer(b, a), PcpError::wrong_opcode);
}

TEST(PcpCodec, NatPmpOnlyGatewayIsRecognised) {
  // RFC 6887 §9: a NAT-PMP server answers version 0, opcode 128 + op, result 1.
  const Bytes b = {0, 129, 0, 1, 0, 0, 0, 5};
  PcpAnswer a;
  EXPECT_EQ(parse_pcp_answer(b, sample_request(), a), PcpError::natpmp_only);
  // But version-0 noise with another result is just dropped.
  Bytes noise = {0, 129, 0, 0, 0, 0, 0, 5};
  EXPECT_EQ(parse_pcp_answer(noise, sample_request(), a), PcpError::bad_size);
  noise.resize(kPcpHeaderSize + kPcpMapDataSize, 0);
  EXPECT_EQ(parse_pcp_answer(noise, sample_request(), a), PcpError::bad_version);
  // Nor is a NAT-PMP request (no response bit).
  const Bytes request = {0, 1, 0, 1, 0, 0, 0, 5};
  EXPECT_NE(parse_pcp_answer(request, sample_request(), a), PcpError::natpmp_only);
}

// The numbered table of answers that must never be taken as ours.
struct Malformed {
  int id;
  const char* what;
  std::function<void(Bytes&)> mutate;
  PcpError expected;
};

TEST(PcpCodec, MalformedTable) {
  const PcpMapRequest r = sample_request();
  const Bytes good = answer_for(r, PcpResult::success, 3600, 5, Endpoint(ip("198.18.0.1"), 40000));
  const std::vector<Malformed> table = {
      {1, "empty", [](Bytes& b) { b.clear(); }, PcpError::bad_size},
      {2, "one byte", [](Bytes& b) { b.resize(1); }, PcpError::bad_size},
      {3, "header minus 4", [](Bytes& b) { b.resize(20); }, PcpError::bad_size},
      {4, "not a multiple of 4", [](Bytes& b) { b.push_back(0); }, PcpError::bad_size},
      {5, "over 1100 bytes", [](Bytes& b) { b.resize(1104, 0); }, PcpError::bad_size},
      {6, "version 1", [](Bytes& b) { b[0] = 1; }, PcpError::bad_version},
      {7, "version 3", [](Bytes& b) { b[0] = 3; }, PcpError::bad_version},
      {8, "R bit clear (reflected request)", [](Bytes& b) { b[1] = kPcpOpMap; }, PcpError::not_response},
      {9, "PEER answer", [](Bytes& b) { b[1] = kPcpResponseBit | kPcpOpPeer; }, PcpError::wrong_opcode},
      {10, "ANNOUNCE answer", [](Bytes& b) { b[1] = kPcpResponseBit; }, PcpError::wrong_opcode},
      {11, "success header only", [](Bytes& b) { b.resize(24); }, PcpError::truncated_map},
      {12, "MAP data cut to 32", [](Bytes& b) { b.resize(56); }, PcpError::truncated_map},
      {13, "nonce first byte", [](Bytes& b) { b[24] ^= 1; }, PcpError::nonce_mismatch},
      {14, "nonce last byte", [](Bytes& b) { b[35] ^= 0x80; }, PcpError::nonce_mismatch},
      {15, "TCP instead of UDP", [](Bytes& b) { b[36] = 6; }, PcpError::wrong_protocol},
      {16, "other internal port", [](Bytes& b) { store_be16(b.data() + 40, 51821); }, PcpError::wrong_port},
      {17, "option data missing", [](Bytes& b) { b.insert(b.end(), {1, 0, 0, 8}); }, PcpError::bad_option},
      {18, "option longer than message", [](Bytes& b) { b.insert(b.end(), {1, 0, 0xff, 0xff}); }, PcpError::bad_option},
      {19, "error header only, NOT_AUTHORIZED", [](Bytes& b) { b.resize(24); b[3] = 2; }, PcpError::truncated_map},
  };
  knit::testing::expect_refusals(table, &PcpAnswer::lifetime_s, std::uint32_t{0xdead},
                                 [&](const Malformed& m, PcpAnswer& a) {
                                   Bytes b = good;
                                   m.mutate(b);
                                   return parse_pcp_answer(b, r, a);
                                 });
}

TEST(PcpCodec, DropsAreCountedByCause) {
  const auto c = knit::testing::counted_drops<PortMapCounters>({PcpError::bad_size, PcpError::truncated_map,
                                                                PcpError::wrong_opcode, PcpError::nonce_mismatch,
                                                                PcpError::wrong_port, PcpError::ok});
  EXPECT_EQ(c.dropped_size, 2u);
  EXPECT_EQ(c.dropped_opcode, 1u);
  EXPECT_EQ(c.dropped_nonce, 1u);
  EXPECT_EQ(c.dropped_mismatch, 1u);
  EXPECT_EQ(c.dropped_total(), 5u);
}

TEST(PcpCodec, RandomBytesNeverParseAsOurs) {
  // Property: without our nonce no answer of any shape is accepted as a MAP answer.
  const PcpMapRequest r = sample_request();
  std::uint64_t state = 42;
  auto next = [&] {
    state = state * 6364136223846793005ull + 1442695040888963407ull;
    return static_cast<std::uint8_t>(state >> 56);
  };
  for (int i = 0; i < 20000; ++i) {
    Bytes b((next() % 32) * 4);
    for (auto& x : b) x = next();
    if (b.size() > 1) b[0] = 2;
    if (b.size() > 3) b[1] = kPcpResponseBit | kPcpOpMap;
    PcpAnswer a;
    const PcpError e = parse_pcp_answer(b, r, a);
    if (e == PcpError::ok) {
      EXPECT_EQ(b.size(), kPcpHeaderSize) << "only a header-only error can pass";
    }
  }
}

}  // namespace
}  // namespace knit::punch
