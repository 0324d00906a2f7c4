// `knit-coordinator relays list` shows each relay's presence, and `relays remove NAME` takes a
// relay out of the relay map (the running server then tells agents and closes the relay).
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <sstream>

#include "control/token.hpp"
#include "coordinator/admin_cli.hpp"
#include "coordinator/state_dir.hpp"
#include "tests/support/temp_dir.hpp"

namespace knit::coordinator {
namespace {

constexpr UnixSeconds kNow = 1'700'000'000;

struct CliRun {
  int code = 0;
  std::string out;
  std::string err;
};

class AdminRelays : public ::testing::Test {
 protected:
  CliRun run(std::vector<std::string> args) {
    args.insert(args.begin(), {"knit-coordinator", "--state-dir", dir_.path().string()});
    std::vector<const char*> argv;
    for (const auto& a : args) argv.push_back(a.c_str());
    std::ostringstream out, err;
    CliContext ctx{out, err, [] { return kNow; }, rng_};
    int code = run_cli(static_cast<int>(argv.size()), argv.data(), ctx);
    return CliRun{code, out.str(), err.str()};
  }

  // A relay registered with a relay token made by the CLI, online or not.
  void add_relay(const std::string& name, std::uint8_t key_fill, bool online) {
    CliRun created = run({"token", "create", "--relay", "--advertise", "127.0.0.1:7443"});
    ASSERT_EQ(created.code, 0) << created.err;
    const std::string text = created.out.substr(created.out.rfind("knit1-"));
    control::JoinToken token;
    ASSERT_EQ(control::decode_token(text, token), control::TokenError::ok);
    auto store = open_store(dir_.path());
    ASSERT_TRUE(store);
    wg::PublicKey key{};
    key.fill(key_fill);
    ASSERT_TRUE((*store)->join_relay({name, key, {name + ".example:443"}, 3478},
                                     PresentedToken{control::token_id_hex(token.id),
                                                    control::secret_hash(token.secret)},
                                     kNow - 600));
    if (!online) {
      ASSERT_TRUE((*store)->set_relay_online(key, false, kNow - 120));
    }
  }

  knit::testing::TempDir dir_;
  SeededRandom rng_{5};
};

TEST_F(AdminRelays, ListShowsPresenceAndRemoveTakesARelayOut) {
  add_relay("ams", 7, /*online=*/false);
  add_relay("fra", 8, /*online=*/true);
  CliRun json = run({"relays", "list", "--json"});
  ASSERT_EQ(json.code, 0) << json.err;
  auto parsed = nlohmann::json::parse(json.out);
  ASSERT_EQ(parsed.size(), 2u);
  EXPECT_EQ(parsed[0]["name"], "ams");
  EXPECT_EQ(parsed[0]["online"], false);
  EXPECT_FALSE(parsed[0]["last_seen"].is_null());
  EXPECT_EQ(parsed[1]["name"], "fra");
  EXPECT_EQ(parsed[1]["online"], true);
  CliRun table = run({"relays", "list"});
  ASSERT_EQ(table.code, 0);
  EXPECT_NE(table.out.find("ONLINE"), std::string::npos) << table.out;
  EXPECT_NE(table.out.find("2m ago"), std::string::npos) << table.out;

  CliRun removed = run({"relays", "remove", "fra"});
  ASSERT_EQ(removed.code, 0) << removed.err;
  EXPECT_NE(removed.out.find("Removed relay fra"), std::string::npos);
  parsed = nlohmann::json::parse(run({"relays", "list", "--json"}).out);
  ASSERT_EQ(parsed.size(), 1u);
  EXPECT_EQ(parsed[0]["name"], "ams");

  CliRun again = run({"relays", "remove", "fra"});
  EXPECT_EQ(again.code, 1);
  EXPECT_NE(again.err.find("no relay named 'fra'"), std::string::npos) << again.err;
  EXPECT_EQ(run({"relays", "remove", "--help"}).code, 0);
}

}  // namespace
}  // namespace knit::coordinator
