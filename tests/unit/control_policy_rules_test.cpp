// policy_rules on the control channel: the binary message that carries an agent's access
// policy rules (opaque here), its round trip, and what the parser refuses.
#include <gtest/gtest.h>

#include "control/messages.hpp"
#include "control/peer_codec.hpp"

namespace knit::control {

TEST(ControlPolicyRules, RoundTrips) {
  for (const PolicyRules& m : {PolicyRules{}, PolicyRules{true, ""}, PolicyRules{true, std::string("KP\x01\x05\x00", 5)}}) {
    const std::string bytes = encode(m);
    EXPECT_EQ(static_cast<std::uint8_t>(bytes[0]), kBinaryTag);
    auto parsed = parse_message(bytes);
    ASSERT_TRUE(std::holds_alternative<PolicyRules>(parsed));
    EXPECT_EQ(std::get<PolicyRules>(parsed), m);
    EXPECT_EQ(encode(Message(m)), bytes);
  }
}

TEST(ControlPolicyRules, MalformedIsRefused) {
  const auto error_of = [](std::string bytes) {
    auto parsed = parse_message(bytes);
    EXPECT_TRUE(std::holds_alternative<ParseError>(parsed)) << bytes.size();
    return std::holds_alternative<ParseError>(parsed) ? std::get<ParseError>(parsed).field : std::string();
  };
  EXPECT_EQ(error_of(std::string("\xb1\x03", 2)), "flags");                // no flags byte
  EXPECT_EQ(error_of(std::string("\xb1\x03\x02", 3)), "flags");            // unknown flag
  EXPECT_EQ(error_of(std::string("\xb1\x03\x00rules", 8)), "rules");       // rules without a policy
  EXPECT_EQ(error_of(std::string("\xb1\x04\x01", 3)), "type");             // unknown kind
  EXPECT_TRUE(std::holds_alternative<ParseError>(parse_message(std::string(kMaxPeerMessageBytes + 1, '\xb1'))));
}

}  // namespace knit::control
