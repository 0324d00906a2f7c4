// The knit-coordinator admin CLI end to end, in process: the same run_cli main() calls, on a
// temporary state directory, with a manual clock and captured output.
#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/stat.h>

#include <algorithm>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <sstream>

#include "base/random.hpp"
#include "control/token.hpp"
#include "coordinator/admin_cli.hpp"
#include "coordinator/key_file.hpp"
#include "coordinator/sqlite_store.hpp"
#include "tests/unit/coordinator_cli_fixture.hpp"

namespace knit::coordinator {
namespace {

namespace fs = std::filesystem;

using cli_test::CliRun;

class AdminCli : public cli_test::CoordinatorCliTest {
 protected:
  AdminCli() : CoordinatorCliTest(77) {}
};

TEST_F(AdminCli, TokenCreatePrintsTheTokenAsItsLastLine) {
  CliRun r = run({"token", "create", "--advertise", "coord.example.com:7443", "--reusable",
               "--expires", "12h", "--tag", "server", "--tag", "db"});
  ASSERT_EQ(r.code, 0) << r.err;
  control::JoinToken token;
  ASSERT_EQ(control::decode_token(r.last_line(), token), control::TokenError::ok) << r.out;
  ASSERT_EQ(token.addresses.size(), 1u);
  EXPECT_EQ(token.addresses[0].to_string(), "coord.example.com:7443");

  // The token carries the coordinator's key, which was made on first use in a private dir.
  auto key = load_key(state_ / kKeyFile);
  ASSERT_TRUE(key);
  EXPECT_EQ(token.coordinator_key, key->public_key);
  struct stat st {};
  ASSERT_EQ(::stat(state_.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0700u);

  // The store has its hash, its kind and its expiry.
  auto stored = store()->find_token(control::token_id_hex(token.id));
  ASSERT_TRUE(stored && *stored);
  EXPECT_EQ((*stored)->secret_hash, control::secret_hash(token.secret));
  EXPECT_TRUE((*stored)->reusable);
  EXPECT_EQ((*stored)->expires_at, now_ + 12 * 3600);
  EXPECT_EQ((*stored)->tags, (std::vector<std::string>{"server", "db"}));
  // Two lines: a summary naming the token's id, then the token alone.
  EXPECT_EQ(std::count(r.out.begin(), r.out.end(), '\n'), 2);
  EXPECT_NE(r.out.find(control::token_id_hex(token.id)), std::string::npos);
  EXPECT_EQ(r.out.find(r.last_line()), r.out.size() - r.last_line().size() - 1);
}

TEST_F(AdminCli, TokenCreateUsesTheSavedListenAddress) {
  CliRun none = run({"token", "create"});
  EXPECT_EQ(none.code, 1);
  EXPECT_NE(none.err.find("--advertise"), std::string::npos);
  EXPECT_EQ(none.err.find('\n'), none.err.size() - 1);  // one line
  EXPECT_FALSE(fs::exists(state_));                     // nothing made for a failed command

  // A mesh whose serve never ran: still no address.
  ASSERT_EQ(run({"token", "create", "--advertise", "x:1"}).code, 0);
  none = run({"token", "create"});
  EXPECT_EQ(none.code, 1);
  EXPECT_NE(none.err.find("--advertise"), std::string::npos);

  ASSERT_TRUE(store()->set_listen_address("192.0.2.10:7443"));
  CliRun r = run({"token", "create", "--relay"});
  ASSERT_EQ(r.code, 0) << r.err;
  control::JoinToken token;
  ASSERT_EQ(control::decode_token(r.last_line(), token), control::TokenError::ok);
  EXPECT_EQ(token.addresses[0].to_string(), "192.0.2.10:7443");
  EXPECT_TRUE((*store()->find_token(control::token_id_hex(token.id)))->relay);
}

// What `serve --advertise` saves (space-separated) goes into every token; a saved wildcard
// listen address is refused with the setting that fixes it, for the service's admin.
TEST_F(AdminCli, TokenCreateUsesTheSavedAdvertisedAddresses) {
  ASSERT_EQ(run({"token", "create", "--advertise", "x:1"}).code, 0);
  ASSERT_TRUE(store()->set_listen_address("coord.example.net:7443 [2001:db8::1]:7443"));
  CliRun r = run({"token", "create", "--reusable"});
  ASSERT_EQ(r.code, 0) << r.err;
  control::JoinToken token;
  ASSERT_EQ(control::decode_token(r.last_line(), token), control::TokenError::ok);
  ASSERT_EQ(token.addresses.size(), 2u);
  EXPECT_EQ(token.addresses[0].to_string(), "coord.example.net:7443");
  EXPECT_EQ(token.addresses[1].to_string(), "[2001:db8::1]:7443");
  EXPECT_NE(r.out.find("for coord.example.net:7443, [2001:db8::1]:7443"), std::string::npos)
      << r.out;

  // --advertise still wins, and takes a comma-separated list like serve's.
  r = run({"token", "create", "--advertise", "a.example:1,b.example:2"});
  ASSERT_EQ(r.code, 0) << r.err;
  ASSERT_EQ(control::decode_token(r.last_line(), token), control::TokenError::ok);
  ASSERT_EQ(token.addresses.size(), 2u);
  EXPECT_EQ(token.addresses[1].to_string(), "b.example:2");

  ASSERT_TRUE(store()->set_listen_address("0.0.0.0:7443"));
  r = run({"token", "create"});
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("KNIT_COORDINATOR_ADVERTISE"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("--advertise"), std::string::npos) << r.err;
  EXPECT_EQ(r.err.find('\n'), r.err.size() - 1);  // one line

  ASSERT_TRUE(store()->set_listen_address("nonsense"));
  r = run({"token", "create"});
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("--advertise"), std::string::npos) << r.err;
}

TEST_F(AdminCli, BadOptionsAreRefusedWithAHint) {
  CliRun r = run({"token", "create", "--advertise", "x:1", "--expires", "soon"});
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("30m, 12h or 7d"), std::string::npos);
  r = run({"token", "create", "--advertise", "x:1", "--tag", "Bad:Tag"});
  EXPECT_EQ(r.code, 1);
  r = run({"token", "create", "--advertise", "nope"});
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("HOST:PORT"), std::string::npos);
  r = run({"--ipv4-prefix", "10.0.0.1/8", "token", "create", "--advertise", "x:1"});
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("did you mean 10.0.0.0/8"), std::string::npos);
  r = run({"token", "frobnicate"});
  EXPECT_EQ(r.code, 2);
  r = run({});
  EXPECT_EQ(r.code, 2);
}

TEST_F(AdminCli, Ipv4PrefixIsFixedAtFirstUse) {
  CliRun r = run({"--ipv4-prefix", "10.99.0.0/16", "token", "create", "--advertise", "x:1"});
  ASSERT_EQ(r.code, 0) << r.err;
  auto mesh = store()->mesh_settings();
  EXPECT_EQ((*mesh)->ipv4_prefix.to_string(), "10.99.0.0/16");
}

TEST_F(AdminCli, ReadingCommandsNeedAnExistingMesh) {
  for (auto args : std::vector<std::vector<std::string>>{
           {"token", "list"}, {"nodes", "list"}, {"relays", "list"}, {"nodes", "remove", "x"}}) {
    CliRun r = run(args);
    EXPECT_EQ(r.code, 1);
    EXPECT_NE(r.err.find("no mesh in"), std::string::npos);
  }
  EXPECT_FALSE(fs::exists(state_));
}

TEST_F(AdminCli, TokenListAndRevoke) {
  CliRun created = run({"token", "create", "--advertise", "x:1", "--ephemeral", "--tag", "ci"});
  ASSERT_EQ(created.code, 0);
  control::JoinToken token;
  ASSERT_EQ(control::decode_token(created.last_line(), token), control::TokenError::ok);
  std::string id = control::token_id_hex(token.id);

  CliRun list = run({"token", "list"});
  ASSERT_EQ(list.code, 0);
  EXPECT_NE(list.out.find("ID"), std::string::npos);
  EXPECT_NE(list.out.find("REVOKED"), std::string::npos);
  EXPECT_NE(list.out.find(id), std::string::npos);
  EXPECT_NE(list.out.find("one-use,ephemeral"), std::string::npos);
  EXPECT_EQ(list.out.find(created.last_line()), std::string::npos);  // never the secret

  CliRun revoked = run({"token", "revoke", id});
  ASSERT_EQ(revoked.code, 0) << revoked.err;
  EXPECT_TRUE((*store()->find_token(id))->revoked);
  list = run({"token", "list"});
  EXPECT_NE(list.out.find("yes"), std::string::npos);

  CliRun unknown = run({"token", "revoke", "0000000000000000"});
  EXPECT_EQ(unknown.code, 1);
  EXPECT_NE(unknown.err.find("token list"), std::string::npos);
}

TEST_F(AdminCli, NodesListAndRemove) {
  CliRun created = run({"token", "create", "--advertise", "x:1", "--reusable", "--tag", "web"});
  ASSERT_EQ(created.code, 0);
  control::JoinToken token;
  ASSERT_EQ(control::decode_token(created.last_line(), token), control::TokenError::ok);
  PresentedToken presented{control::token_id_hex(token.id), control::secret_hash(token.secret)};
  {
    auto s = store();
    wg::PublicKey a{}, b{};
    a.fill(1);
    b.fill(2);
    ASSERT_TRUE(s->join_node({a, a, "alpha", "linux"}, presented, now_ - 7200));
    ASSERT_TRUE(s->join_node({b, b, "beta", "freebsd"}, presented, now_ - 7200));
    ASSERT_TRUE(s->set_node_online(b, false, now_ - 3600));
  }

  CliRun table = run({"nodes", "list"});
  ASSERT_EQ(table.code, 0) << table.err;
  EXPECT_NE(table.out.find("NAME"), std::string::npos);
  EXPECT_NE(table.out.find("alpha"), std::string::npos);
  EXPECT_NE(table.out.find("100.64.0.2"), std::string::npos);
  EXPECT_NE(table.out.find("1h ago"), std::string::npos);
  EXPECT_NE(table.out.find("freebsd"), std::string::npos);

  CliRun json = run({"nodes", "list", "--json"});
  ASSERT_EQ(json.code, 0);
  auto parsed = nlohmann::json::parse(json.out);
  ASSERT_EQ(parsed.size(), 2u);
  EXPECT_EQ(parsed[0]["name"], "alpha");
  EXPECT_EQ(parsed[0]["ipv4"], "100.64.0.2");
  EXPECT_EQ(parsed[0]["online"], true);
  EXPECT_EQ(parsed[0]["os"], "linux");
  EXPECT_EQ(parsed[0]["tags"], nlohmann::json::array({"web"}));
  EXPECT_EQ(parsed[1]["online"], false);
  EXPECT_EQ(parsed[1]["last_seen"], "2023-11-14T21:13:20Z");
  EXPECT_TRUE(parsed[1]["ipv6"].get<std::string>().starts_with("fd"));

  CliRun removed = run({"nodes", "remove", "alpha"});
  ASSERT_EQ(removed.code, 0) << removed.err;
  EXPECT_EQ(store()->list_nodes()->size(), 1u);
  CliRun again = run({"nodes", "remove", "alpha"});
  EXPECT_EQ(again.code, 1);
  EXPECT_NE(again.err.find("nodes list"), std::string::npos);
}

TEST_F(AdminCli, RelaysList) {
  ASSERT_EQ(run({"token", "create", "--advertise", "x:1"}).code, 0);
  Token t;
  t.id = "00000000000000cc";
  t.secret_hash.fill(3);
  t.relay = true;
  wg::PublicKey k{};
  k.fill(4);
  {
    auto s = store();
    ASSERT_TRUE(s->add_token(t));
    ASSERT_TRUE(s->join_relay({"fra", k, {"relay.example.com:443"}, 3478},
                              PresentedToken{t.id, t.secret_hash}, now_));
  }
  CliRun table = run({"relays", "list"});
  ASSERT_EQ(table.code, 0);
  EXPECT_NE(table.out.find("relay.example.com:443"), std::string::npos);
  CliRun json = run({"relays", "list", "--json"});
  auto parsed = nlohmann::json::parse(json.out);
  ASSERT_EQ(parsed.size(), 1u);
  EXPECT_EQ(parsed[0]["name"], "fra");
  EXPECT_EQ(parsed[0]["stun_port"], 3478);
  EXPECT_EQ(parsed[0]["addresses"], nlohmann::json::array({"relay.example.com:443"}));
}

TEST_F(AdminCli, HelpEverywhere) {
  for (auto args : std::vector<std::vector<std::string>>{{"--help"},
                                                         {"token", "--help"},
                                                         {"token", "create", "--help"},
                                                         {"token", "list", "--help"},
                                                         {"token", "revoke", "--help"},
                                                         {"nodes", "list", "--help"},
                                                         {"nodes", "remove", "--help"},
                                                         {"relays", "list", "--help"}}) {
    CliRun r = run(args);
    EXPECT_EQ(r.code, 0);
    EXPECT_NE(r.out.find("Usage"), std::string::npos);
  }
}

TEST_F(AdminCli, GlobalOptionsMayFollowTheSubcommand) {
  std::vector<std::string> args = {"knit-coordinator", "token", "create", "--advertise", "x:1",
                                   "--state-dir", state_.string()};
  std::vector<const char*> argv;
  for (const auto& a : args) argv.push_back(a.c_str());
  std::ostringstream out, err;
  CliContext ctx{out, err, [this] { return now_; }, rng_};
  EXPECT_EQ(run_cli(static_cast<int>(argv.size()), argv.data(), ctx), 0) << err.str();
  EXPECT_TRUE(fs::exists(state_ / "knit.db"));
}

}  // namespace
}  // namespace knit::coordinator
