// dns_config and the register "features" list: round trips, bounds, and what is refused.
#include <gtest/gtest.h>

#include "control/messages.hpp"

namespace knit::control {
namespace {

TEST(DnsConfig, RoundTrips) {
  DnsConfig config;
  config.domain = "knit.internal";
  config.split = {{"corp.example", {Endpoint::parse("10.1.0.53:53").value(), Endpoint::parse("[fd00::53]:53").value()}}};
  auto parsed = to_message(parse_message(encode(config)));
  ASSERT_TRUE(parsed);
  ASSERT_TRUE(std::holds_alternative<DnsConfig>(*parsed));
  EXPECT_EQ(std::get<DnsConfig>(*parsed), config);
}

TEST(DnsConfig, RefusesBadDomainsAndShapes) {
  const char* bad[] = {
      R"({"v":1,"type":"dns_config","domain":"Knit.Internal","split":[]})",
      R"({"v":1,"type":"dns_config","domain":"knit..internal","split":[]})",
      R"({"v":1,"type":"dns_config","domain":"-knit.internal","split":[]})",
      R"({"v":1,"type":"dns_config","domain":"knit.internal.","split":[]})",
      R"({"v":1,"type":"dns_config","domain":"knit.internal"})",
      R"({"v":1,"type":"dns_config","domain":"knit.internal","split":[{"domain":"a.example","resolvers":[]}]})",
      R"({"v":1,"type":"dns_config","domain":"knit.internal","split":[{"domain":"a.example","resolvers":["10.0.0.1"]}]})",
      R"({"v":1,"type":"dns_config","domain":"knit.internal","split":[{"domain":"a.example","resolvers":["10.0.0.1:53"]},{"domain":"a.example","resolvers":["10.0.0.2:53"]}]})",
  };
  for (const char* text : bad) EXPECT_TRUE(std::holds_alternative<ParseError>(parse_message(text))) << text;
  EXPECT_FALSE(is_valid_domain(std::string(254, 'a')));
  EXPECT_TRUE(is_valid_domain("a-b.c0"));
}

TEST(RegisterFeatures, RoundTripAndAbsentMeansNone) {
  RegisterRequest request;
  request.disco_key.fill(3);
  request.hostname = "laptop";
  request.os = "linux";
  request.version = "0.1.0";
  request.features = {"dns", "later-feature"};
  auto parsed = to_message(parse_message(encode(request)));
  ASSERT_TRUE(parsed);
  EXPECT_EQ(std::get<RegisterRequest>(*parsed), request);
  request.features.clear();
  const std::string text = encode(request);
  EXPECT_EQ(text.find("features"), std::string::npos);  // an older coordinator sees what it knew
  parsed = to_message(parse_message(text));
  ASSERT_TRUE(parsed);
  EXPECT_TRUE(std::get<RegisterRequest>(*parsed).features.empty());
}

}  // namespace
}  // namespace knit::control
