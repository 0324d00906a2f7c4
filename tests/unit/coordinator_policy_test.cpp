// The access policy at the coordinator: the admin commands end to end (in process, a temporary
// state directory) and the publisher that gives each agent its rules.
#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "base/bytes.hpp"
#include "base/random.hpp"
#include "control/peer_codec.hpp"
#include "control/token.hpp"
#include "coordinator/admin_cli.hpp"
#include "coordinator/policy_publisher.hpp"
#include "coordinator/sqlite_store.hpp"
#include "policy/wire.hpp"
#include "tests/unit/coordinator_cli_fixture.hpp"

namespace knit::coordinator {
namespace {

namespace fs = std::filesystem;

using cli_test::CliRun;

class PolicyCli : public cli_test::CoordinatorCliTest {
 protected:
  PolicyCli() : CoordinatorCliTest(78) {}
  void SetUp() override {
    CoordinatorCliTest::SetUp();
    // Three nodes: web-1 (token tag web), db-1 (token tag db), plain.
    for (const auto& [name, tag, fill] : {std::tuple{"web-1", "web", 1}, {"db-1", "db", 2}, {"plain", "", 3}}) {
      std::vector<std::string> args = {"token", "create", "--advertise", "x:1"};
      if (*tag) args.insert(args.end(), {"--tag", tag});
      CliRun created = run(args);
      ASSERT_EQ(created.code, 0) << created.err;
      const std::string line = created.last_line();
      control::JoinToken token;
      ASSERT_EQ(control::decode_token(line, token), control::TokenError::ok);
      PresentedToken presented{control::token_id_hex(token.id), control::secret_hash(token.secret)};
      auto s = store();
      wg::PublicKey key{};
      key.fill(static_cast<std::uint8_t>(fill));
      ASSERT_TRUE(s->join_node({key, key, name, "linux"}, presented, now_));
    }
  }
  std::string file(const std::string& text) {
    const fs::path p = root_ / ("policy" + std::to_string(files_++) + ".json");
    std::ofstream(p) << text;
    return p.string();
  }

  int files_ = 0;
};

constexpr const char* kPolicy = R"({
  // web may reach the database
  "rules": [{"action": "accept", "src": ["tag:web"], "dst": ["tag:db:5432"], "proto": "tcp", "name": "web-db"},],
  "tests": [{"src": "web-1", "accept": ["db-1:5432"], "deny": ["db-1:22", "plain:5432"]}],
})";

}  // namespace

TEST_F(PolicyCli, SetGetCheckAndClear) {
  CliRun none = run({"policy", "get"});
  EXPECT_EQ(none.code, 0);
  EXPECT_NE(none.err.find("no policy is set"), std::string::npos);
  EXPECT_EQ(run({"policy", "check", "plain", "db-1", "5432/tcp"}).out, "allowed: no policy is set (the mesh is open)\n");

  const std::string path = file(kPolicy);
  CliRun set = run({"policy", "set", path});
  ASSERT_EQ(set.code, 0) << set.err;
  EXPECT_NE(set.out.find("1 rules, 0 groups, 0 hosts, 1 tests passed"), std::string::npos) << set.out;
  EXPECT_EQ(run({"policy", "get"}).out, kPolicy);  // as written, comments and all

  CliRun allowed = run({"policy", "check", "web-1", "tag:db", "5432/tcp"});
  EXPECT_EQ(allowed.code, 0);
  EXPECT_EQ(allowed.out, "allowed: web-1 (100.64.0.2) -> db-1 (100.64.0.3) 5432/tcp by \"web-db\" (line 3)\n");
  CliRun denied = run({"policy", "check", "plain", "db-1", "5432/tcp"});
  EXPECT_EQ(denied.code, 1);
  EXPECT_EQ(denied.out, "denied: plain (100.64.0.4) -> db-1 (100.64.0.3) 5432/tcp: no rule accepts it\n");
  EXPECT_NE(run({"policy", "check", "web-1", "db-1", "5432"}).err.find("PORT/PROTO"), std::string::npos);

  EXPECT_EQ(run({"policy", "clear"}).code, 0);
  EXPECT_TRUE(run({"policy", "get"}).out.empty());
  EXPECT_EQ(store()->policy_settings()->version, 2u);
}

TEST_F(PolicyCli, RefusedPoliciesSayWhereAndChangeNothing) {
  ASSERT_EQ(run({"policy", "set", file(kPolicy)}).code, 0);
  const PolicySettings before = *store()->policy_settings();
  struct Case { const char* text; const char* says; };
  const Case cases[] = {
      {"{\"rules\": [{\"action\": \"accept\", \"src\": [\"nobody\"], \"dst\": [\"*:*\"]}]}", ":1:41: unknown name \"nobody\""},
      {"{\"rules\": [{\"action\": \"accept\", \"src\": [\"*\"], \"dst\": [\"db-1:99999\"]}]}", ":1:55: \"db-1:99999\": bad port"},
      {"{\n\"tests\": [{\"src\": \"web-1\", \"accept\": [\"db-1:5432\"]}]}", ":2:39: test failed: web-1 -> db-1 (100.64.0.3) port 5432/tcp is denied"},
      {"{\"rules\": [}", ":1:12: invalid JSON"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.text);
    const std::string path = file(c.text);
    for (const char* verb : {"set", "test"}) {
      CliRun r = run({"policy", verb, path});
      EXPECT_EQ(r.code, 1);
      EXPECT_NE(r.err.find(path + c.says), std::string::npos) << r.err;
    }
  }
  EXPECT_EQ(*store()->policy_settings(), before);
  CliRun ok = run({"policy", "test", file(kPolicy)});
  EXPECT_EQ(ok.code, 0) << ok.err;
  EXPECT_EQ(ok.out, "ok: 1 rules, 0 groups, 0 hosts, 1 tests passed\n");
  EXPECT_NE(run({"policy", "set", (root_ / "missing.json").string()}).err.find("cannot read"), std::string::npos);
}

TEST_F(PolicyCli, AdminTagsJoinTokenTagsAndKeepThePolicysTestsTrue) {
  ASSERT_EQ(run({"policy", "set", file(kPolicy)}).code, 0);
  // Tagging plain as web would make the test "plain:5432 denied"... still true (plain is the
  // destination there); tagging it db would break it.
  CliRun web = run({"nodes", "tag", "plain", "tag:web"});
  ASSERT_EQ(web.code, 0) << web.err;
  EXPECT_EQ(web.out, "plain: tag:web\n");
  EXPECT_EQ(run({"policy", "check", "plain", "db-1", "5432/tcp"}).code, 0);
  CliRun db = run({"nodes", "tag", "plain", "tag:db"});
  EXPECT_EQ(db.code, 1);
  EXPECT_NE(db.err.find("test failed: web-1 -> plain"), std::string::npos) << db.err;
  EXPECT_EQ(run({"nodes", "tag", "web-1", "tag:ops"}).out, "web-1: tag:web tag:ops\n");
  EXPECT_EQ(run({"nodes", "untag", "plain", "tag:web"}).out, "plain: no tags\n");
  EXPECT_EQ(run({"nodes", "tag", "ghost", "tag:x"}).code, 1);
  EXPECT_NE(run({"nodes", "tag", "plain", "tag:Bad!"}).err.find("invalid tag"), std::string::npos);
  // A token's tags cannot be taken away by untag.
  EXPECT_EQ(run({"nodes", "untag", "web-1", "tag:web"}).out, "web-1: tag:web tag:ops\n");
}

TEST(PolicyPublisher, EachNodeGetsItsOwnRulesAndOnlyWhenTheyChange) {
  PolicyPublisher pub;
  const auto peer = [](const char* name, std::uint8_t fill, const char* v4, std::vector<std::string> tags) {
    control::PeerInfo p;
    p.name = name;
    p.node_key.fill(fill);
    p.ipv4 = IpAddress::parse(v4).value();
    p.ipv6 = *IpAddress::parse(("fd7a::" + std::to_string(fill)).c_str());
    p.tags = std::move(tags);
    return p;
  };
  control::PeerInfo web = peer("web-1", 1, "100.64.0.1", {"web"}), db = peer("db-1", 2, "100.64.0.2", {"db"});
  pub.set_peers({&web, &db});
  // No policy: each gets "none" once.
  auto first = pub.message_for(db.node_key);
  ASSERT_TRUE(first);
  auto parsed = control::parse_message(*first);
  ASSERT_TRUE(std::holds_alternative<control::PolicyRules>(parsed));
  EXPECT_FALSE(std::get<control::PolicyRules>(parsed).in_force);
  EXPECT_FALSE(pub.message_for(db.node_key));

  PolicySettings settings;
  settings.document = R"({"rules": [{"action": "accept", "src": ["tag:web"], "dst": ["tag:db:5432"]}]})";
  settings.version = 4;
  ASSERT_TRUE(pub.set_settings(settings));
  auto to_db = pub.message_for(db.node_key);
  auto to_web = pub.message_for(web.node_key);
  ASSERT_TRUE(to_db && to_web);
  const auto rules_of = [](const std::string& message) {
    auto m = control::parse_message(message);
    const auto& p = std::get<control::PolicyRules>(m);
    EXPECT_TRUE(p.in_force);
    std::uint64_t version = 0;
    policy::RuleSet set;
    EXPECT_EQ(policy::decode_rules(p.rules, version, set), policy::WireError::none);
    EXPECT_EQ(version, 4u);
    return set;
  };
  EXPECT_EQ(rules_of(*to_db).rules().size(), 1u);
  EXPECT_EQ(rules_of(*to_web).rules().size(), 0u);  // nothing may open flows into web
  // Endpoints and presence change often and do not matter: nothing is sent.
  db.online = true;
  db.endpoints = {Endpoint::parse("192.0.2.1:41641").value()};
  EXPECT_FALSE(pub.set_peers({&web, &db}));
  EXPECT_FALSE(pub.message_for(db.node_key));
  // An admin tags web "db" too: only web's rules change.
  settings.admin_tags[to_base64(web.node_key)] = {"db"};
  ASSERT_TRUE(pub.set_settings(settings));
  EXPECT_FALSE(pub.message_for(db.node_key));
  auto again = pub.message_for(web.node_key);
  ASSERT_TRUE(again);
  EXPECT_EQ(rules_of(*again).rules().size(), 1u);
  // A new session of a node gets its rules again.
  pub.forget(db.node_key);
  EXPECT_TRUE(pub.message_for(db.node_key));
  // A stored document that does not parse leaves the previous policy in force.
  settings.document = "{";
  std::string why;
  EXPECT_FALSE(pub.set_settings(settings, &why));
  EXPECT_NE(why.find("does not parse"), std::string::npos);
  EXPECT_TRUE(pub.in_force());
}

// Which nodes who-sees-whom may have changed for between two compilations: what the server
// reconciles trimmed maps against instead of every peer (server_publish.cpp).
TEST(PolicyPublisher, SaysWhichNodesVisibilityChangedFor) {
  PolicyPublisher pub;
  const auto peer = [](const char* name, std::uint8_t fill, std::vector<std::string> tags) {
    control::PeerInfo p;
    p.name = name;
    p.node_key.fill(fill);
    p.ipv4 = *IpAddress::parse(("100.64.0." + std::to_string(fill)).c_str());
    p.ipv6 = *IpAddress::parse(("fd7a::" + std::to_string(fill)).c_str());
    p.tags = std::move(tags);
    return p;
  };
  control::PeerInfo web = peer("web-1", 1, {"web"}), db = peer("db-1", 2, {"db"}),
                    web2 = peer("web-2", 3, {"web"}), other = peer("other", 4, {});
  PolicySettings settings;
  settings.document = R"({"rules": [{"action": "accept", "src": ["tag:web"], "dst": ["tag:db:5432"]}]})";
  settings.version = 1;
  ASSERT_TRUE(pub.set_settings(settings));
  pub.set_peers({&web, &db});
  const std::uint64_t g1 = pub.visibility_generation();
  EXPECT_EQ(pub.visibility_changes(g1 - 1), nullptr);  // the document is new: anything
  // web-2 joins: db's rules now name its address too; web-1's view of the others is unchanged.
  pub.set_peers({&web, &db, &web2});
  const std::uint64_t g2 = pub.visibility_generation();
  ASSERT_EQ(g2, g1 + 1);
  const auto* changes = pub.visibility_changes(g1);
  ASSERT_NE(changes, nullptr);
  EXPECT_EQ(*changes, (std::vector<control::NodeKey>{db.node_key, web2.node_key}));
  EXPECT_TRUE(pub.visibility()->sees(web2.node_key, db.node_key));
  EXPECT_EQ(pub.visibility_changes(g1 - 1), nullptr);  // generations skipped
  // A node nobody's rules name joins: only it.
  pub.set_peers({&web, &db, &web2, &other});
  changes = pub.visibility_changes(g2);
  ASSERT_NE(changes, nullptr);
  EXPECT_EQ(*changes, (std::vector<control::NodeKey>{other.node_key}));
  // web-1 leaves: db's rules change, and web-1 went.
  pub.set_peers({&db, &web2, &other});
  changes = pub.visibility_changes(g2 + 1);
  ASSERT_NE(changes, nullptr);
  EXPECT_EQ(*changes, (std::vector<control::NodeKey>{web.node_key, db.node_key}));
  // A new document: anything.
  settings.document = R"({"rules": [{"action": "accept", "src": ["tag:db"], "dst": ["tag:web:*"]}]})";
  settings.version = 2;
  ASSERT_TRUE(pub.set_settings(settings));
  EXPECT_EQ(pub.visibility_changes(pub.visibility_generation() - 1), nullptr);
}

}  // namespace knit::coordinator
