// NAT-PMP answers (RFC 6886) as the NAT-PMP client checks them before libnatpmp reads them:
// good answers of both opcodes, error answers, and a numbered table of hostile ones.
#include <gtest/gtest.h>

#include <functional>

#include "punch/portmap/natpmp.hpp"
#include "tests/support/refusal_table.hpp"

namespace knit::punch {
namespace {

using namespace portmap;

TEST(NatPmpCodec, RequestsMatchTheRfc) {
  EXPECT_EQ(build_natpmp_address_request(), (Bytes{0, 0}));
  const Bytes m = build_natpmp_map_request(kNatPmpOpMapUdp, 51820, 40000, 7200);
  ASSERT_EQ(m.size(), 12u);
  EXPECT_EQ(m[1], 1);
  EXPECT_EQ(load_be16(m.data() + 2), 0);  // reserved
  EXPECT_EQ(load_be16(m.data() + 4), 51820);
  EXPECT_EQ(load_be16(m.data() + 6), 40000);
  EXPECT_EQ(load_be32(m.data() + 8), 7200u);
}

TEST(NatPmpCodec, AddressAnswer) {
  const Bytes b = build_natpmp_address_answer(NatPmpResult::success, 99, IpAddress::parse("198.18.0.1").value());
  NatPmpAnswer a;
  ASSERT_EQ(check_natpmp_answer(b, kNatPmpOpAddress, 0, a), NatPmpError::ok);
  EXPECT_EQ(a.external_address.to_string(), "198.18.0.1");
  EXPECT_EQ(a.epoch_s, 99u);
  EXPECT_EQ(a.result, NatPmpResult::success);
}

TEST(NatPmpCodec, MapAnswer) {
  const Bytes b = build_natpmp_map_answer(kNatPmpOpMapUdp, NatPmpResult::success, 7, 51820, 40001, 3600);
  NatPmpAnswer a;
  ASSERT_EQ(check_natpmp_answer(b, kNatPmpOpMapUdp, 51820, a), NatPmpError::ok);
  EXPECT_EQ(a.internal_port, 51820);
  EXPECT_EQ(a.external_port, 40001);
  EXPECT_EQ(a.lifetime_s, 3600u);
}

TEST(NatPmpCodec, ErrorAnswersMayStopAfterTheEpoch) {
  // §3.5: result 2 (refused), only header and epoch.
  const Bytes b = {0, 129, 0, 2, 0, 0, 0, 9};
  NatPmpAnswer a;
  ASSERT_EQ(check_natpmp_answer(b, kNatPmpOpMapUdp, 51820, a), NatPmpError::ok);
  EXPECT_EQ(a.result, NatPmpResult::not_authorized);
  EXPECT_EQ(natpmp_failure(a.result).error, PortMapErrc::not_authorized);
  EXPECT_EQ(natpmp_failure(NatPmpResult::unsupported_opcode).error, PortMapErrc::unsupported);
  EXPECT_EQ(natpmp_failure(NatPmpResult::out_of_resources).error, PortMapErrc::server_error);
  // A full-size error answer is fine too, and its port is not checked.
  const Bytes full = build_natpmp_map_answer(kNatPmpOpMapUdp, NatPmpResult::network_failure, 9, 1, 0, 0);
  ASSERT_EQ(check_natpmp_answer(full, kNatPmpOpMapUdp, 51820, a), NatPmpError::ok);
  EXPECT_EQ(a.result, NatPmpResult::network_failure);
}

struct Hostile {
  int id;
  const char* what;
  std::uint8_t expected_opcode;
  std::function<Bytes()> make;
  NatPmpError expected;
};

TEST(NatPmpCodec, HostileTable) {
  const auto map_ok = [] {
    return build_natpmp_map_answer(kNatPmpOpMapUdp, NatPmpResult::success, 1, 51820, 40000, 60);
  };
  const auto addr_ok = [] {
    return build_natpmp_address_answer(NatPmpResult::success, 1, IpAddress::parse("198.18.0.1").value());
  };
  const std::vector<Hostile> table = {
      {1, "empty", kNatPmpOpMapUdp, [] { return Bytes{}; }, NatPmpError::bad_size},
      {2, "seven bytes", kNatPmpOpMapUdp, [] { return Bytes{0, 129, 0, 0, 0, 0, 0}; }, NatPmpError::bad_size},
      {3, "success map cut to 12", kNatPmpOpMapUdp, [&] { Bytes b = map_ok(); b.resize(12); return b; }, NatPmpError::bad_size},
      {4, "success map padded to 20", kNatPmpOpMapUdp, [&] { Bytes b = map_ok(); b.resize(20); return b; }, NatPmpError::bad_size},
      {5, "success address cut to 8", kNatPmpOpAddress, [&] { Bytes b = addr_ok(); b.resize(8); return b; }, NatPmpError::bad_size},
      {6, "error answer longer than full", kNatPmpOpAddress, [] { Bytes b(16, 0); b[1] = 128; b[3] = 3; return b; }, NatPmpError::bad_size},
      {7, "huge", kNatPmpOpMapUdp, [] { return Bytes(1200, 0); }, NatPmpError::bad_size},
      {8, "PCP version 2", kNatPmpOpMapUdp, [&] { Bytes b = map_ok(); b[0] = 2; return b; }, NatPmpError::bad_version},
      {9, "request, not answer", kNatPmpOpMapUdp, [] { return build_natpmp_map_request(1, 51820, 0, 60); }, NatPmpError::not_response},
      {10, "address answer while mapping", kNatPmpOpMapUdp, [&] { Bytes b = addr_ok(); b.resize(16); return b; }, NatPmpError::wrong_opcode},
      {11, "map answer while asking the address", kNatPmpOpAddress, map_ok, NatPmpError::wrong_opcode},
      {12, "TCP map answer", kNatPmpOpMapUdp, [] { return build_natpmp_map_answer(kNatPmpOpMapTcp, NatPmpResult::success, 1, 51820, 1, 60); }, NatPmpError::wrong_opcode},
      {13, "another internal port", kNatPmpOpMapUdp, [] { return build_natpmp_map_answer(kNatPmpOpMapUdp, NatPmpResult::success, 1, 51821, 1, 60); }, NatPmpError::wrong_port},
  };
  knit::testing::expect_refusals(table, &NatPmpAnswer::epoch_s, std::uint32_t{0xbeef},
                                 [](const Hostile& h, NatPmpAnswer& a) {
                                   return check_natpmp_answer(h.make(), h.expected_opcode, 51820, a);
                                 });
}

TEST(NatPmpCodec, DropsAreCountedByCause) {
  const auto c = knit::testing::counted_drops<PortMapCounters>({NatPmpError::bad_size, NatPmpError::wrong_opcode,
                                                                NatPmpError::not_response, NatPmpError::wrong_port,
                                                                NatPmpError::bad_version});
  EXPECT_EQ(c.dropped_size, 1u);
  EXPECT_EQ(c.dropped_opcode, 2u);
  EXPECT_EQ(c.dropped_mismatch, 1u);
  EXPECT_EQ(c.dropped_version, 1u);
}

}  // namespace
}  // namespace knit::punch
