// The pushed rule sets' wire form: round trips, and every malformed shape refused by name.
#include <gtest/gtest.h>

#include <random>

#include "policy/limits.hpp"
#include "policy/wire.hpp"

using namespace knit;
using namespace knit::policy;

namespace {

RuleSet sample() {
  CompiledRule a;
  a.rule = 0;
  a.name = "rule 1 (line 3)";
  a.protocols = kTcp;
  a.src = {IpPrefix::parse("100.64.0.2/32").value(), IpPrefix::parse("fd7a::/48").value()};
  a.dst = {IpPrefix::parse("100.64.0.9/32").value()};
  a.ports = {{5432, 5432}, {80, 90}};
  CompiledRule b;
  b.rule = 3;
  b.name = "ops";
  b.protocols = kAnyProtocol;
  b.src = {IpPrefix::parse("0.0.0.0/0").value()};
  b.dst = {IpPrefix::parse("10.1.0.0/16").value()};
  b.ports = {kAllPorts};
  return RuleSet({a, b});
}

}  // namespace

TEST(PolicyWire, RoundTrips) {
  const RuleSet rules = sample();
  const std::string bytes = encode_rules(42, rules);
  std::uint64_t version = 0;
  RuleSet back;
  ASSERT_EQ(decode_rules(bytes, version, back), WireError::none);
  EXPECT_EQ(version, 42u);
  EXPECT_EQ(back, rules);
  // The empty set (a policy that accepts nothing into this node) is valid too.
  ASSERT_EQ(decode_rules(encode_rules(1, RuleSet{}), version, back), WireError::none);
  EXPECT_TRUE(back.rules().empty());
}

TEST(PolicyWire, MalformedShapesAreRefused) {
  const std::string good = encode_rules(7, sample());
  std::uint64_t version = 0;
  RuleSet out;
  const auto decode = [&](std::string b) { return decode_rules(b, version, out); };
  EXPECT_EQ(decode(""), WireError::bad_magic);
  EXPECT_EQ(decode("KP\x02"), WireError::bad_magic);
  EXPECT_EQ(decode(std::string("KP\x01", 3)), WireError::truncated);
  for (std::size_t n = 3; n < good.size(); ++n) EXPECT_NE(decode(good.substr(0, n)), WireError::none) << n;
  EXPECT_EQ(decode(good + "x"), WireError::trailing);
  // Rule count over the bound.
  EXPECT_EQ(decode(std::string("KP\x01\x01\xff\xff\x7f", 7)), WireError::too_many);
  // One rule, each field broken in turn: index 0, protocols, name, src, dst, ports.
  const auto rule = [](std::string body) { return std::string("KP\x01\x01\x01", 5) + body; };
  const std::string v4 = std::string("\x04\x20\x0a\x00\x00\x01", 6);
  EXPECT_EQ(decode(rule(std::string("\x00\x00\x00", 3))), WireError::bad_protocol);
  EXPECT_EQ(decode(rule(std::string("\x00\x10\x00", 3))), WireError::bad_protocol);
  EXPECT_EQ(decode(rule(std::string("\x00\x01\x41", 3) + std::string(65, 'a'))), WireError::bad_name);
  EXPECT_EQ(decode(rule(std::string("\x00\x01\x01\x07", 4))), WireError::bad_name);
  EXPECT_EQ(decode(rule(std::string("\x00\x01\x00\x00", 4))), WireError::empty_list);
  EXPECT_EQ(decode(rule(std::string("\x00\x01\x00\x01\x05\x00", 6))), WireError::bad_prefix);
  EXPECT_EQ(decode(rule(std::string("\x00\x01\x00\x01\x04\x21\x0a\x00\x00\x01", 10))), WireError::bad_prefix);
  EXPECT_EQ(decode(rule(std::string("\x00\x01\x00\x01\x04\x08\x0a\x00\x00\x01", 10))), WireError::bad_prefix);
  EXPECT_EQ(decode(rule(std::string("\x00\x01\x00\x01", 4) + v4 + std::string("\x01", 1) + v4 + std::string("\x00", 1))),
            WireError::empty_list);
  EXPECT_EQ(decode(rule(std::string("\x00\x01\x00\x01", 4) + v4 + std::string("\x01", 1) + v4 +
                        std::string("\x01\x00\x50\x00\x16", 5))),
            WireError::bad_range);
  EXPECT_EQ(decode(rule(std::string("\x00\x01\x00\x01", 4) + v4 + std::string("\x01", 1) + v4 +
                        std::string("\x41", 1))),
            WireError::too_many);
  EXPECT_EQ(decode(rule(std::string("\x00\x01\x00\x01", 4) + v4 + std::string("\x01", 1) + v4 +
                        std::string("\x01\x00\x16\x00\x16", 5))),
            WireError::none);
  std::string huge(kMaxWireBytes + 1, '\0');
  EXPECT_EQ(decode(huge), WireError::too_big);
}

TEST(PolicyWire, RandomBytesNeverCrashAndWhatDecodesReencodesTheSame) {
  const std::string good = encode_rules(9, sample());
  std::mt19937 rng(11);
  for (int i = 0; i < 20000; ++i) {
    std::string b = good;
    for (int k = 0; k < 3; ++k) b[3 + rng() % (b.size() - 3)] = static_cast<char>(rng());
    std::uint64_t version = 0;
    RuleSet out;
    if (decode_rules(b, version, out) == WireError::none) {
      const std::string again = encode_rules(version, out);
      std::uint64_t v2 = 0;
      RuleSet twice;
      ASSERT_EQ(decode_rules(again, v2, twice), WireError::none);
      EXPECT_EQ(twice, out);
    }
  }
}
