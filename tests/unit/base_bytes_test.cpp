#include <gtest/gtest.h>

#include "base/bytes.hpp"
#include "base/ip.hpp"
#include "base/random.hpp"

namespace knit {
namespace {

TEST(Hex, RoundTripAndRejectsGarbage) {
  Bytes b = {0x00, 0xab, 0xff, 0x10};
  EXPECT_EQ(to_hex(b), "00abff10");
  EXPECT_EQ(from_hex("00ABff10"), b);
  EXPECT_FALSE(from_hex("abc"));
  EXPECT_FALSE(from_hex("zz"));
}

TEST(Base64, RoundTripAndRejectsGarbage) {
  Bytes b(32, 7);
  auto text = to_base64(b);
  EXPECT_EQ(text.size(), 44u);
  EXPECT_EQ(from_base64(text), b);
  EXPECT_FALSE(from_base64("not base64!"));
}

TEST(Endpoint, ParsesAndFormatsBothFamilies) {
  auto v4 = Endpoint::parse("10.1.2.3:51820");
  ASSERT_TRUE(v4);
  EXPECT_EQ(v4->to_string(), "10.1.2.3:51820");
  auto v6 = Endpoint::parse("[fd00::1]:7");
  ASSERT_TRUE(v6);
  EXPECT_EQ(v6->to_string(), "[fd00::1]:7");
  for (const char* bad : {"10.1.2.3", "10.1.2.3:99999", "fd00::1:7", "[fd00::1]", "x:1", ":1", "1.2.3.4:"})
    EXPECT_FALSE(Endpoint::parse(bad)) << bad;
}

TEST(IpPrefix, ParsesLengthsWithinFamily) {
  EXPECT_EQ(IpPrefix::parse("10.0.0.0/8")->length, 8);
  EXPECT_EQ(IpPrefix::parse("10.0.0.1")->length, 32);
  EXPECT_EQ(IpPrefix::parse("fd00::/64")->length, 64);
  EXPECT_FALSE(IpPrefix::parse("10.0.0.0/33"));
  EXPECT_FALSE(IpPrefix::parse("10.0.0.0/"));
}

TEST(Random, SeededIsDeterministicAndUniformStaysInBounds) {
  SeededRandom a(42), b(42);
  EXPECT_EQ(a.next_u64(), b.next_u64());
  for (int i = 0; i < 1000; ++i) EXPECT_LT(a.uniform(7), 7u);
}

}  // namespace
}  // namespace knit
