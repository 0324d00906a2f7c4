// `knit status --json`'s self.policy: written by knitd, read back by the CLI, absent from an
// older knitd, bounded when read.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "localapi/protocol.hpp"

namespace knit::localapi {

namespace {
StatusReply reply_with(std::optional<PolicyStatus> policy) {
  StatusReply reply;
  reply.status.self.name = "db";
  reply.status.self.filter = FilterStatus{};
  reply.status.self.filter->policy = std::move(policy);
  return reply;
}
}  // namespace

TEST(LocalapiPolicyStatus, RoundTripsAndIsAdditive) {
  PolicyStatus p;
  p.in_force = true;
  p.version = 7;
  p.denied = 3;
  p.cut = 1;
  p.flows = 2;
  p.rejected_updates = 4;
  p.rules = {{"\"web-db\" (line 3)", 5, 50}, {"rule 2 (line 4)", 0, 0}};
  const std::string line = encode_response(reply_with(p));
  const auto doc = nlohmann::json::parse(line);
  const auto& self = doc["status"]["self"];
  EXPECT_EQ(self["policy"]["in_force"], true);
  EXPECT_EQ(self["policy"]["rules"][0]["accepted_flows"], 5);
  EXPECT_TRUE(self.contains("shields_up") && self.contains("filter"));  // the fields beside it stay
  auto back = parse_response(line);
  ASSERT_TRUE(std::holds_alternative<ControlResponse>(back));
  const auto& status = std::get<StatusReply>(std::get<ControlResponse>(back));
  ASSERT_TRUE(status.status.self.filter && status.status.self.filter->policy);
  EXPECT_EQ(*status.status.self.filter->policy, p);
  // An older knitd: no "policy" at all.
  auto old = parse_response(encode_response(reply_with(std::nullopt)));
  ASSERT_TRUE(std::holds_alternative<ControlResponse>(old));
  EXPECT_FALSE(std::get<StatusReply>(std::get<ControlResponse>(old)).status.self.filter->policy);
}

TEST(LocalapiPolicyStatus, DebugRequestAndReply) {
  const std::string request = encode_request(PolicyDebugRequest{});
  auto parsed = parse_request(request);
  ASSERT_TRUE(std::holds_alternative<ControlRequest>(parsed));
  EXPECT_TRUE(std::holds_alternative<PolicyDebugRequest>(std::get<ControlRequest>(parsed)));
  auto reply = parse_response(encode_response(PolicyDebugReply{"rule 1: accept tcp ...\n"}));
  ASSERT_TRUE(std::holds_alternative<ControlResponse>(reply));
  EXPECT_EQ(std::get<PolicyDebugReply>(std::get<ControlResponse>(reply)).text, "rule 1: accept tcp ...\n");
}

}  // namespace knit::localapi
