// A node's own entry through the control server: an agent that lists the "self" feature hears
// of its own rename with a self_update (peer deltas leave its own entry out), once per change;
// an agent without the feature is never sent the new message type.
#include <gtest/gtest.h>

#include "tests/support/coordinator_server_fixture.hpp"

namespace knit::coordinator {
namespace {

TEST_F(ServerTest, RenamedAgentHearsItsNewNameOnlyWithTheSelfFeature) {
  start();
  const std::string t = reusable_token();
  auto follower = agent();
  auto response = follower->join(t, "laptop", {"dns", "self"});
  ASSERT_TRUE(response && response->ok);
  EXPECT_EQ(response->node.name, "laptop");
  auto plain = agent();
  ASSERT_TRUE(plain->join(t, "server"));
  ASSERT_TRUE(plain->wait_until([&] { return plain->peer(follower->public_key()) != nullptr; }));

  ASSERT_TRUE(admin_->rename_node("laptop", "desk"));
  auto update = follower->wait_for<control::SelfUpdate>();
  ASSERT_TRUE(update);
  EXPECT_EQ(update->node.name, "desk");
  EXPECT_EQ(update->node.node_key, follower->public_key());
  EXPECT_EQ(update->node.ipv4, response->node.ipv4);
  EXPECT_EQ(update->node.ipv6, response->node.ipv6);
  // The other agent sees the rename in its map as before.
  ASSERT_TRUE(plain->wait_until([&] { return plain->peer(follower->public_key())->name == "desk"; }));

  // A change that is not its name or addresses (it comes online elsewhere, endpoints) sends
  // no second self_update; a rename of the plain agent sends it nothing new either.
  ASSERT_TRUE(follower->send(control::EndpointUpdate{{Endpoint::parse("192.0.2.7:41641").value()}}));
  ASSERT_TRUE(admin_->rename_node("server", "db"));
  ASSERT_TRUE(follower->wait_until([&] { return follower->peer(plain->public_key())->name == "db"; }));
  ASSERT_TRUE(follower->send(control::Ping{9}));
  bool again = false;
  for (int i = 0; i < 20; ++i) {
    auto m = follower->next(std::chrono::milliseconds(100));
    if (!m) continue;
    if (std::holds_alternative<control::SelfUpdate>(*m)) again = true;
    if (std::holds_alternative<control::Pong>(*m)) break;
  }
  EXPECT_FALSE(again);
  ASSERT_TRUE(plain->send(control::Ping{3}));
  bool plain_got_self = false;
  for (int i = 0; i < 30; ++i) {
    auto m = plain->next(std::chrono::milliseconds(100));
    if (!m) continue;
    if (std::holds_alternative<control::SelfUpdate>(*m)) plain_got_self = true;
    if (std::holds_alternative<control::Pong>(*m)) break;
  }
  EXPECT_FALSE(plain_got_self);
  EXPECT_FALSE(follower->map_broken());
}

}  // namespace
}  // namespace knit::coordinator
