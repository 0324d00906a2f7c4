// Subnet routes at the coordinator (coordinator/routes.hpp): the approval rules of the RouteBook
// (advertised and approved, auto-approval inside a token's prefixes, the exit's default routes,
// refused prefixes), its stored form read as hostile, and the admin CLI (`routes list|approve|
// reject`, `token create --auto-approve`) on a real SQLite store.
#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <nlohmann/json.hpp>
#include <sstream>

#include "base/random.hpp"
#include "coordinator/admin_cli.hpp"
#include "coordinator/routes.hpp"
#include "coordinator/sqlite_store.hpp"
#include "tests/unit/coordinator_cli_fixture.hpp"

namespace knit::coordinator {
namespace {

namespace fs = std::filesystem;

IpPrefix P(const char* text) { return IpPrefix::parse(text).value(); }
wg::PublicKey key(std::uint8_t n) {
  wg::PublicKey k{};
  k.fill(n);
  return k;
}
const std::vector<IpPrefix> kMesh{P("100.64.0.0/10"), P("fd7a:1:2::/48")};

TEST(RouteBook, NothingIsPublishedUntilApproved) {
  RouteBook book;
  EXPECT_TRUE(book.published(key(1)).empty());
  EXPECT_FALSE(book.advertise(key(1), {{P("10.1.0.0/24"), P("fd00:1::/64")}, true}, {}, kMesh));
  EXPECT_TRUE(book.published(key(1)).empty());
  EXPECT_EQ(book.approve(key(1), P("10.1.0.0/24")), "");
  EXPECT_EQ(book.published(key(1)), std::vector<IpPrefix>{P("10.1.0.0/24")});
  EXPECT_EQ(book.approve(key(1), std::nullopt), "");
  const auto published = book.published(key(1));
  EXPECT_EQ(published.size(), 3u);
  EXPECT_NE(std::find(published.begin(), published.end(), P("0.0.0.0/0")), published.end());
  EXPECT_NE(std::find(published.begin(), published.end(), P("::/0")), published.end());
}

TEST(RouteBook, OnlyAdvertisedRoutesCanBeApproved) {
  RouteBook book;
  // A node cannot be given someone else's subnet: approval needs its own advertisement.
  EXPECT_NE(book.approve(key(1), P("10.1.0.0/24")), "");
  book.advertise(key(2), {{P("10.1.0.0/24")}, false}, {}, kMesh);
  EXPECT_NE(book.approve(key(1), P("10.1.0.0/24")), "");
  EXPECT_NE(book.approve(key(2), P("10.1.0.0/16")), "");  // not the advertised prefix
  EXPECT_NE(book.approve(key(2), std::nullopt), "");       // no exit advertised
  EXPECT_TRUE(book.published(key(1)).empty());
}

TEST(RouteBook, RejectAndWithdrawTakeRoutesOut) {
  RouteBook book;
  book.advertise(key(1), {{P("10.1.0.0/24"), P("10.2.0.0/24")}, false}, {}, kMesh);
  book.approve(key(1), P("10.1.0.0/24"));
  book.approve(key(1), P("10.2.0.0/24"));
  EXPECT_EQ(book.reject(key(1), P("10.2.0.0/24")), "");
  EXPECT_EQ(book.published(key(1)), std::vector<IpPrefix>{P("10.1.0.0/24")});
  EXPECT_NE(book.reject(key(1), P("10.3.0.0/24")), "");
  // Withdrawn by the node: gone from the map; advertised again, the approval still holds.
  EXPECT_TRUE(book.advertise(key(1), {{}, false}, {}, kMesh));
  EXPECT_TRUE(book.published(key(1)).empty());
  EXPECT_TRUE(book.advertise(key(1), {{P("10.1.0.0/24")}, false}, {}, kMesh));
  EXPECT_EQ(book.published(key(1)), std::vector<IpPrefix>{P("10.1.0.0/24")});
}

TEST(RouteBook, AutoApprovalCoversPrefixesInsideTheTokensOnly) {
  RouteBook book;
  control::RouteList auto_approve{{P("10.0.0.0/8")}, true};
  EXPECT_TRUE(book.advertise(key(1), {{P("10.4.0.0/16"), P("192.168.1.0/24"), P("10.0.0.0/7")}, true},
                             auto_approve, kMesh));
  auto published = book.published(key(1));
  std::sort(published.begin(), published.end());
  std::vector<IpPrefix> want{P("10.4.0.0/16"), P("0.0.0.0/0"), P("::/0")};
  std::sort(want.begin(), want.end());
  EXPECT_EQ(published, want);
  // A rejection sticks while the route stays advertised (auto-approval applies to new ones).
  book.reject(key(1), P("10.4.0.0/16"));
  book.advertise(key(1), {{P("10.4.0.0/16"), P("192.168.1.0/24"), P("10.0.0.0/7")}, true}, auto_approve, kMesh);
  EXPECT_EQ(book.published(key(1)).size(), 2u);
}

TEST(RouteBook, RefusedPrefixesAreNeverRecorded) {
  RouteBook book;
  book.advertise(key(1),
                 {{P("100.64.1.0/24"), P("127.0.0.0/8"), P("169.254.0.0/16"), P("fe80::/64"),
                   P("224.0.0.0/8"), P("0.0.0.0/0"), P("fd7a:1:2:3::/64"), P("10.9.0.0/24")},
                  false},
                 {{P("0.0.0.0/1"), P("128.0.0.0/1")}, false}, kMesh);
  ASSERT_NE(book.find(key(1)), nullptr);
  EXPECT_EQ(book.find(key(1))->advertised, std::vector<IpPrefix>{P("10.9.0.0/24")});
  EXPECT_NE(book.approve(key(1), P("100.64.1.0/24")), "");
}

TEST(RouteBook, StoredTextRoundTripsAndHostileTextIsSkipped) {
  RouteBook book;
  book.advertise(key(1), {{P("10.1.0.0/24")}, true}, {}, kMesh);
  book.approve(key(1), P("10.1.0.0/24"));
  const RouteBook again = RouteBook::parse(book.encode());
  ASSERT_NE(again.find(key(1)), nullptr);
  EXPECT_EQ(*again.find(key(1)), *book.find(key(1)));
  for (const char* text : {"", "[]", "{", "{\"x\": 1}", "{\"AAAA\": {}}", "null", "{\"a\":{\"advertised\":[1,2]}}",
                           "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]"}) {
    EXPECT_TRUE(RouteBook::parse(text).nodes().empty()) << text;
  }
  // A damaged list keeps its valid prefixes; host bits or text are dropped.
  const std::string key_text = book.encode().substr(2, 44);
  const RouteBook partial = RouteBook::parse("{\"" + key_text + "\": {\"advertised\": [\"10.1.0.1/24\", \"x\", \"10.2.0.0/24\"], "
                                             "\"approved\": [\"10.2.0.0/24\"], \"exit\": \"yes\"}}");
  EXPECT_EQ(partial.published(key(1)), std::vector<IpPrefix>{P("10.2.0.0/24")});
}

// ---- the admin CLI on a real store ----

using cli_test::CliRun;

class RoutesCli : public cli_test::CoordinatorCliTest {
 protected:
  RoutesCli() : CoordinatorCliTest(5) {}
  // A node joined with the token `token_id` (created by the CLI) and advertising `ad`.
  Node join(Store& s, std::uint8_t n, const std::string& hostname, const std::string& token_text) {
    (void)token_text;
    auto tokens = s.list_tokens();
    EXPECT_TRUE(tokens && !tokens->empty());
    NodeRegistration reg{key(n), key(static_cast<std::uint8_t>(n + 100)), hostname, "linux"};
    PresentedToken presented{tokens->back().id, tokens->back().secret_hash};
    auto joined = s.join_node(reg, presented, now_);
    EXPECT_TRUE(joined);
    return joined->node;
  }

};

TEST_F(RoutesCli, ApproveRejectAndListThroughTheStore) {
  ASSERT_EQ(run({"token", "create", "--reusable", "--advertise", "127.0.0.1:7443"}).code, 0);
  auto s = store();
  const Node router = join(*s, 1, "router", "");
  auto mesh = s->mesh_settings();
  ASSERT_TRUE(mesh && *mesh);
  ASSERT_TRUE(store_advertisement(*s, router, {{P("10.1.0.0/24"), P("10.2.0.0/24")}, true},
                                  {(*mesh)->ipv4_prefix, (*mesh)->ipv6_prefix}));

  CliRun list = run({"routes", "list", "--json"});
  ASSERT_EQ(list.code, 0) << list.err;
  auto doc = nlohmann::json::parse(list.out);
  ASSERT_EQ(doc.size(), 1u);
  EXPECT_EQ(doc[0]["node"], "router");
  EXPECT_EQ(doc[0]["pending"], nlohmann::json({"10.1.0.0/24", "10.2.0.0/24"}));
  EXPECT_EQ(doc[0]["published"], nlohmann::json::array());

  CliRun approve = run({"routes", "approve", "router", "10.1.0.0/24"});
  ASSERT_EQ(approve.code, 0) << approve.err;
  ASSERT_EQ(run({"routes", "approve", "router", "exit"}).code, 0);
  auto book = load_routes(*s);
  ASSERT_TRUE(book);
  EXPECT_EQ(book->published(router.node_key).size(), 3u);
  ASSERT_EQ(run({"routes", "reject", "router", "exit"}).code, 0);
  book = load_routes(*s);
  EXPECT_EQ(book->published(router.node_key), std::vector<IpPrefix>{P("10.1.0.0/24")});
  CliRun table = run({"routes", "list"});
  EXPECT_NE(table.out.find("router"), std::string::npos);
  EXPECT_NE(table.out.find("10.2.0.0/24"), std::string::npos);
}

TEST_F(RoutesCli, NodesThatRouteNothingWriteNothing) {
  ASSERT_EQ(run({"token", "create", "--reusable", "--advertise", "127.0.0.1:7443"}).code, 0);
  auto s = store();
  const Node plain = join(*s, 1, "plain", "");
  ASSERT_TRUE(store_advertisement(*s, plain, {{}, false}, kMesh));
  auto row = s->read_setting(kRoutesKey);
  ASSERT_TRUE(row);
  EXPECT_FALSE(row->has_value());  // every connect says "nothing": no row, no change note
}

TEST_F(RoutesCli, BadInputIsOneLineAndExitOne) {
  ASSERT_EQ(run({"token", "create", "--reusable", "--advertise", "127.0.0.1:7443"}).code, 0);
  auto s = store();
  join(*s, 1, "router", "");
  for (const std::vector<std::string>& args :
       {std::vector<std::string>{"routes", "approve", "router", "10.1.0.0/33"},
        {"routes", "approve", "router", "banana"},
        {"routes", "approve", "router", "10.1.0.1/24"},
        {"routes", "approve", "nobody", "10.1.0.0/24"},
        {"routes", "approve", "router", "10.1.0.0/24"},  // not advertised
        {"routes", "reject", "router", "exit"},
        {"token", "create", "--auto-approve", "10.0.0.0/8,nonsense", "--advertise", "127.0.0.1:7443"}}) {
    CliRun r = run(args);
    EXPECT_EQ(r.code, 1) << args[2] << " " << args[3];
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  }
}

TEST_F(RoutesCli, TokenAutoApprovalAppliesToItsNodes) {
  CliRun created = run({"token", "create", "--reusable", "--auto-approve", "10.0.0.0/8,exit", "--advertise",
                        "127.0.0.1:7443"});
  ASSERT_EQ(created.code, 0) << created.err;
  EXPECT_NE(created.out.find("auto-approves 10.0.0.0/8,exit"), std::string::npos) << created.out;
  auto s = store();
  const Node router = join(*s, 1, "router", "");
  auto auto_approve = load_auto_approve(*s, router.token_id);
  ASSERT_TRUE(auto_approve);
  EXPECT_TRUE(auto_approve->exit);
  ASSERT_TRUE(store_advertisement(*s, router, {{P("10.7.0.0/16"), P("172.16.0.0/12")}, true}, kMesh));
  auto book = load_routes(*s);
  ASSERT_TRUE(book);
  const auto published = book->published(router.node_key);
  EXPECT_EQ(published.size(), 3u);  // 10.7.0.0/16 and the exit's two; 172.16/12 awaits an admin
  EXPECT_EQ(std::find(published.begin(), published.end(), P("172.16.0.0/12")), published.end());
}

}  // namespace
}  // namespace knit::coordinator
