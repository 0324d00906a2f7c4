// Subnet routes through the control server: an agent's route_advertise is stored, and only what
// an admin (through its own Store handle, as the CLI does) or the token approved reaches the
// other agents' peer maps; a rejection takes it out again. Register responses list "routes".
#include <gtest/gtest.h>

#include <algorithm>

#include "control/token.hpp"
#include "coordinator/routes.hpp"
#include "tests/support/coordinator_server_fixture.hpp"

namespace knit::coordinator {
namespace {

IpPrefix P(const char* text) { return IpPrefix::parse(text).value(); }

std::vector<IpPrefix> sorted(std::vector<IpPrefix> v) {
  std::sort(v.begin(), v.end());
  return v;
}

TEST_F(ServerTest, OnlyApprovedRoutesReachThePeerMap) {
  start();
  const std::string t = reusable_token();
  auto a = joined(t, "a");
  auto router = agent();
  auto response = router->join(t, "router");
  ASSERT_TRUE(response && response->ok);
  EXPECT_NE(std::find(response->features.begin(), response->features.end(), "routes"), response->features.end());
  ASSERT_TRUE(a->wait_until([&] { return a->peer(router->public_key()) != nullptr; }));

  ASSERT_TRUE(router->send(control::RouteAdvertise{{P("10.1.0.0/24"), P("100.64.0.0/24")}, true}));
  ASSERT_TRUE(router->send(control::Ping{1}));
  ASSERT_TRUE(router->wait_for<control::Pong>());
  EXPECT_TRUE(a->peer(router->public_key())->routes.empty());  // advertised, not approved

  auto node = admin_->find_node(router->public_key());
  ASSERT_TRUE(node && *node);
  ASSERT_TRUE(decide_route(*admin_, **node, P("10.1.0.0/24"), true));
  ASSERT_TRUE(a->wait_until([&] { return a->peer(router->public_key())->routes == std::vector<IpPrefix>{P("10.1.0.0/24")}; }));
  // The mesh's own prefix was never recorded, so it cannot be approved.
  EXPECT_FALSE(decide_route(*admin_, **node, P("100.64.0.0/24"), true));

  ASSERT_TRUE(decide_route(*admin_, **node, std::nullopt, true));
  ASSERT_TRUE(a->wait_until([&] { return a->peer(router->public_key())->routes.size() == 3; }));
  EXPECT_EQ(sorted(a->peer(router->public_key())->routes), sorted({P("10.1.0.0/24"), P("0.0.0.0/0"), P("::/0")}));

  ASSERT_TRUE(decide_route(*admin_, **node, P("10.1.0.0/24"), false));
  ASSERT_TRUE(decide_route(*admin_, **node, std::nullopt, false));
  ASSERT_TRUE(a->wait_until([&] { return a->peer(router->public_key())->routes.empty(); }));
  EXPECT_FALSE(a->map_broken());
}

TEST_F(ServerTest, TokenAutoApprovalPublishesAtOnceAndWithdrawalRemoves) {
  start();
  const std::string t = reusable_token();
  auto a = joined(t, "a");
  TokenOptions options;
  options.reusable = true;
  const std::string router_token = token(options);
  control::JoinToken decoded;
  ASSERT_EQ(control::decode_token(router_token, decoded), control::TokenError::ok);
  ASSERT_TRUE(save_auto_approve(*admin_, control::token_id_hex(decoded.id), control::RouteList{{P("10.0.0.0/8")}, false}));
  auto router = joined(router_token, "router");
  ASSERT_TRUE(a->wait_until([&] { return a->peer(router->public_key()) != nullptr; }));
  ASSERT_TRUE(router->send(control::RouteAdvertise{{P("10.5.0.0/16"), P("192.168.9.0/24")}, true}));
  ASSERT_TRUE(a->wait_until([&] { return a->peer(router->public_key())->routes == std::vector<IpPrefix>{P("10.5.0.0/16")}; }));
  ASSERT_TRUE(router->send(control::RouteAdvertise{{}, false}));
  ASSERT_TRUE(a->wait_until([&] { return a->peer(router->public_key())->routes.empty(); }));
}

}  // namespace
}  // namespace knit::coordinator
