// Peer maps trimmed by the access policy, through the control server: with a policy in force an
// agent's map holds only the peers it may reach or be reached by (coordinator/visibility.hpp),
// in the first map and in every delta after; setting, changing and clearing the policy move the
// agents' maps by deltas (no agent's copy ever breaks: Agent::map_broken), and a node that joins
// later gets a trimmed map too.
#include <gtest/gtest.h>

#include <algorithm>

#include "tests/support/coordinator_server_fixture.hpp"

namespace knit::coordinator {
namespace {

std::vector<std::string> names(const Agent& agent) {
  std::vector<std::string> out;
  for (const control::PeerInfo& p : agent.map().peers) out.push_back(p.name);
  std::sort(out.begin(), out.end());
  return out;
}
using Names = std::vector<std::string>;

}  // namespace

TEST_F(ServerTest, APolicyTrimsEachMapToThePeersItMayReach) {
  start();
  const std::string t = reusable_token();
  auto a = joined(t, "a");
  auto b = joined(t, "b");
  auto c = joined(t, "c");
  ASSERT_TRUE(a->wait_until([&] { return names(*a) == Names{"b", "c"}; }));
  ASSERT_TRUE(c->wait_until([&] { return names(*c) == Names{"a", "b"}; }));

  // a may reach b; nobody else anybody.
  PolicySettings policy;
  policy.document = R"({"rules": [{"action": "accept", "src": ["a"], "dst": ["b:*"]}]})";
  policy.version = 1;
  ASSERT_TRUE(admin_->set_policy_settings(policy));
  ASSERT_TRUE(a->wait_until([&] { return names(*a) == Names{"b"}; }));
  ASSERT_TRUE(b->wait_until([&] { return names(*b) == Names{"a"}; }));  // b answers a: it needs a
  ASSERT_TRUE(c->wait_until([&] { return names(*c).empty(); }));

  // A change of a visible peer reaches who sees it, as a change; nothing reaches c.
  const std::vector<Endpoint> endpoints{Endpoint::parse("192.0.2.7:41641").value()};
  clock_ += 5;
  ASSERT_TRUE(b->send(control::EndpointUpdate{endpoints}));
  ASSERT_TRUE(a->wait_until([&] { return a->peer(b->public_key())->endpoints == endpoints; }));
  ASSERT_TRUE(c->send(control::Ping{1}));
  ASSERT_TRUE(c->wait_for<control::Pong>());
  EXPECT_TRUE(names(*c).empty());

  // A node that joins later gets a trimmed map at once, and nobody learns of it.
  auto d = joined(t, "d");
  ASSERT_TRUE(d->send(control::Ping{2}));
  ASSERT_TRUE(d->wait_for<control::Pong>());
  EXPECT_TRUE(names(*d).empty());
  ASSERT_TRUE(a->send(control::Ping{3}));
  ASSERT_TRUE(a->wait_for<control::Pong>());
  EXPECT_EQ(names(*a), Names{"b"});

  // The policy widens: d may reach everyone. Everyone gains d, d gains everyone.
  policy.document = R"({"rules": [{"action": "accept", "src": ["a"], "dst": ["b:*"]},
                                   {"action": "accept", "src": ["d"], "dst": ["*:*"]}]})";
  policy.version = 2;
  ASSERT_TRUE(admin_->set_policy_settings(policy));
  ASSERT_TRUE(d->wait_until([&] { return names(*d) == Names{"a", "b", "c"}; }));
  ASSERT_TRUE(c->wait_until([&] { return names(*c) == Names{"d"}; }));
  ASSERT_TRUE(a->wait_until([&] { return names(*a) == Names{"b", "d"}; }));

  // Cleared: every map whole again.
  policy.document.clear();
  policy.version = 3;
  ASSERT_TRUE(admin_->set_policy_settings(policy));
  ASSERT_TRUE(c->wait_until([&] { return names(*c) == Names{"a", "b", "d"}; }));
  ASSERT_TRUE(a->wait_until([&] { return names(*a) == Names{"b", "c", "d"}; }));
  ASSERT_TRUE(b->wait_until([&] { return names(*b) == Names{"a", "c", "d"}; }));
  ASSERT_TRUE(d->wait_until([&] { return names(*d) == Names{"a", "b", "c"}; }));
  // And after that, deltas as before, for everyone.
  clock_ += 5;
  ASSERT_TRUE(c->send(control::EndpointUpdate{endpoints}));
  ASSERT_TRUE(a->wait_until([&] { return a->peer(c->public_key())->endpoints == endpoints; }));
  for (Agent* x : {a.get(), b.get(), c.get(), d.get()}) EXPECT_FALSE(x->map_broken());
}

}  // namespace knit::coordinator
