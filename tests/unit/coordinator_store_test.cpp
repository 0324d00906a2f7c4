// The store suite, written once and run against both backends: SQLite on temporary files and a
// real PostgreSQL started for the test program (tests/support/postgres_server.hpp; skipped, with
// the reason, only where the postgresql package is not installed). Every operation, concurrent
// joins on separate connections (one-use tokens stay one-use, addresses stay unique), exporting
// and importing a mesh (migrate). What one backend alone does is in coordinator_store_alone_test.
#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/stat.h>

#include <atomic>
#include <filesystem>
#include <functional>
#include <set>
#include <thread>

#include "tests/support/postgres_server.hpp"
#include "tests/support/store_rows.hpp"
#include "tests/support/temp_dir.hpp"
#include "base/bytes.hpp"
#include "base/random.hpp"
#include "coordinator/control_view.hpp"
#include "coordinator/migrations.hpp"
#include "coordinator/migrate_command.hpp"
#include "coordinator/pg_conn.hpp"
#include "coordinator/pg_store.hpp"
#include "coordinator/sqlite_store.hpp"
#include "coordinator/state_dir.hpp"

namespace knit::coordinator {
namespace {

namespace fs = std::filesystem;

using knit::testing::TempDir;

using namespace knit::coordinator::testing;


std::string backend_name(const ::testing::TestParamInfo<StoreBackend>& info) {
  return info.param == StoreBackend::sqlite ? "SQLite" : "PostgreSQL";
}

class StoreTest : public ::testing::TestWithParam<StoreBackend> {
 protected:
  void SetUp() override {
    if (GetParam() == StoreBackend::postgres) {
      auto& pg = knit::testing::PostgresServer::instance();
      if (!pg.available()) GTEST_SKIP() << pg.why();
      location_ = pg.fresh_database();
    } else {
      location_ = dir_.db();
    }
    auto s = open();
    ASSERT_TRUE(s) << s.error().message;
    store_ = std::move(*s);
    ASSERT_TRUE(store_->ensure_mesh(std::nullopt, rng_));
    ASSERT_TRUE(store_->add_token(token_));
  }

  // Another connection to the same state (an admin command, another coordinator).
  Result<std::unique_ptr<Store>> open() {
    if (GetParam() == StoreBackend::postgres) {
      auto s = PgStore::open(location_);
      if (!s) return s.error();
      return std::unique_ptr<Store>(std::move(*s));
    }
    auto s = SqliteStore::open(location_);
    if (!s) return s.error();
    return std::unique_ptr<Store>(std::move(*s));
  }

  // Runs body(connection, t) on `threads` threads at once, each with a connection of its own (as
  // several coordinators); a connection that cannot be opened counts as a failure in `failed`.
  void on_own_connections(int threads, std::atomic<int>& failed, const std::function<void(Store&, int)>& body) {
    std::vector<std::thread> running;
    for (int t = 0; t < threads; ++t) {
      running.emplace_back([&, t] {
        auto conn = open();
        if (!conn) {
          ++failed;
          return;
        }
        body(**conn, t);
      });
    }
    for (auto& th : running) th.join();
  }

  // There are `count` nodes, each with its own IPv4, IPv6 and name.
  void expect_unique_nodes(std::size_t count) {
    auto nodes = store_->list_nodes();
    ASSERT_TRUE(nodes);
    ASSERT_EQ(nodes->size(), count);
    std::set<IpAddress> v4, v6;
    std::set<std::string> names;
    for (const Node& n : *nodes) {
      v4.insert(n.ipv4);
      v6.insert(n.ipv6);
      names.insert(n.name);
    }
    EXPECT_EQ(v4.size(), count);
    EXPECT_EQ(v6.size(), count);
    EXPECT_EQ(names.size(), count);
  }

  Node join(std::uint8_t n, const std::string& hostname, UnixSeconds now = 2000) {
    auto r = store_->join_node(reg(n, hostname), presented(token_), now);
    EXPECT_TRUE(r) << (r ? "" : r.error().message);
    EXPECT_EQ(r->token, TokenCheck::ok);
    return r->node;
  }

  TempDir dir_;
  std::string location_;
  SeededRandom rng_{42};
  Token token_ = make_token("00000000000000aa", 7);
  std::unique_ptr<Store> store_;
};

TEST_P(StoreTest, MeshSettingsAreFixedOnFirstUse) {
  auto mesh = store_->mesh_settings();
  ASSERT_TRUE(mesh && *mesh);
  EXPECT_EQ((*mesh)->ipv4_prefix.to_string(), "100.64.0.0/10");
  EXPECT_EQ((*mesh)->ipv6_prefix.length, 48);
  EXPECT_EQ((*mesh)->ipv6_prefix.address.bytes()[0], 0xfd);

  // Asking again with another seed keeps the ULA chosen the first time.
  SeededRandom other(7);
  auto again = store_->ensure_mesh(std::nullopt, other);
  ASSERT_TRUE(again);
  EXPECT_EQ(again->ipv6_prefix, (*mesh)->ipv6_prefix);
}

TEST_P(StoreTest, Ipv4PrefixChangesOnlyWhileTheMeshIsEmpty) {
  auto changed = store_->ensure_mesh(IpPrefix::parse("10.77.0.0/16"), rng_);
  ASSERT_TRUE(changed) << changed.error().message;
  EXPECT_EQ(changed->ipv4_prefix.to_string(), "10.77.0.0/16");
  Node a = join(1, "a");
  EXPECT_EQ(a.ipv4.to_string(), "10.77.0.2");

  auto refused = store_->ensure_mesh(IpPrefix::parse("10.88.0.0/16"), rng_);
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().code, Errc::conflict);
  // The same prefix again is not a change.
  EXPECT_TRUE(store_->ensure_mesh(IpPrefix::parse("10.77.0.0/16"), rng_));

  auto bad = store_->ensure_mesh(IpPrefix::parse("10.77.0.1/16"), rng_);
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().code, Errc::invalid);
  EXPECT_NE(bad.error().message.find("10.77.0.0/16"), std::string::npos);
}

TEST_P(StoreTest, ListenAddressIsRemembered) {
  auto none = store_->listen_address();
  ASSERT_TRUE(none);
  EXPECT_FALSE(*none);
  ASSERT_TRUE(store_->set_listen_address("coord.example.com:7443"));
  auto some = store_->listen_address();
  ASSERT_TRUE(some && *some);
  EXPECT_EQ(**some, "coord.example.com:7443");
}

TEST_P(StoreTest, DnsSettingsDefaultThenStoredAndNoted) {
  auto first = store_->dns_settings();
  ASSERT_TRUE(first) << first.error().message;
  EXPECT_EQ(first->domain, "knit.internal");
  EXPECT_TRUE(first->split.empty());

  DnsSettings wanted;
  wanted.domain = "Corp.Internal.";
  wanted.split = {{"lab.example", {Endpoint::parse("10.1.0.53:53").value(), Endpoint::parse("[fd00::53]:5353").value()}}};
  ASSERT_TRUE(store_->set_dns_settings(wanted));
  auto other = open();  // another connection reads what was stored
  ASSERT_TRUE(other);
  auto stored = (*other)->dns_settings();
  ASSERT_TRUE(stored);
  EXPECT_EQ(stored->domain, "corp.internal");
  ASSERT_EQ(stored->split.size(), 1u);
  EXPECT_EQ(stored->split[0].domain, "lab.example");
  EXPECT_EQ(stored->split[0].resolvers, wanted.split[0].resolvers);

  DnsSettings bad;
  bad.domain = "not a domain";
  auto refused = store_->set_dns_settings(bad);
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().code, Errc::invalid);
  bad.domain = "ok.internal";
  bad.split = {{"a.example", {}}};
  EXPECT_FALSE(store_->set_dns_settings(bad));
  bad.split = {{"a.example", {Endpoint::parse("10.0.0.1:53").value()}}, {"A.example", {Endpoint::parse("10.0.0.2:53").value()}}};
  EXPECT_FALSE(store_->set_dns_settings(bad));  // the same domain twice, once lowercased
}

TEST_P(StoreTest, RenameKeepsKeyAndAddressesAndRefusesClashes) {
  Node a = join(1, "alpha");
  Node b = join(2, "beta");
  auto renamed = store_->rename_node("alpha", "desk");
  ASSERT_TRUE(renamed) << renamed.error().message;
  EXPECT_EQ(renamed->name, "desk");
  EXPECT_EQ(renamed->node_key, a.node_key);
  auto found = store_->find_node(a.node_key);
  ASSERT_TRUE(found && *found);
  EXPECT_EQ((*found)->name, "desk");
  EXPECT_EQ((*found)->ipv4, a.ipv4);
  auto clash = store_->rename_node("desk", "beta");
  ASSERT_FALSE(clash);
  EXPECT_EQ(clash.error().code, Errc::conflict);
  auto missing = store_->rename_node("nobody", "x");
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().code, Errc::not_found);
  auto bad = store_->rename_node("desk", "Not A Label");
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().code, Errc::invalid);
  // Rejoining with the same hostname keeps the new name.
  auto again = store_->join_node(reg(1, "alpha"), std::nullopt, 3000);
  ASSERT_TRUE(again);
  EXPECT_EQ(again->node.name, "desk");
  EXPECT_EQ(b.name, "beta");
}

TEST_P(StoreTest, TokensAreStoredListedAndRevoked) {
  Token t = make_token("0123456789abcdef", 9, false);
  t.ephemeral = true;
  t.expires_at = 5000;
  t.tags = {"server", "db"};
  ASSERT_TRUE(store_->add_token(t));
  auto dup = store_->add_token(t);
  ASSERT_FALSE(dup);
  EXPECT_EQ(dup.error().code, Errc::conflict);

  auto found = store_->find_token(t.id);
  ASSERT_TRUE(found && *found);
  EXPECT_EQ((*found)->secret_hash, t.secret_hash);
  EXPECT_TRUE((*found)->ephemeral);
  EXPECT_FALSE((*found)->reusable);
  EXPECT_EQ((*found)->expires_at, 5000);
  EXPECT_EQ((*found)->tags, t.tags);

  auto all = store_->list_tokens();
  ASSERT_TRUE(all);
  ASSERT_EQ(all->size(), 2u);

  ASSERT_TRUE(store_->revoke_token(t.id));
  EXPECT_TRUE((*store_->find_token(t.id))->revoked);
  auto missing = store_->revoke_token("ffffffffffffffff");
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().code, Errc::not_found);

  Token bad_id = make_token("xyz", 1);
  EXPECT_EQ(store_->add_token(bad_id).error().code, Errc::invalid);
  Token bad_tag = make_token("1111111111111111", 1);
  bad_tag.tags = {"Not Valid"};
  EXPECT_EQ(store_->add_token(bad_tag).error().code, Errc::invalid);
}

TEST_P(StoreTest, JoinStoresEverythingTheNodeReported) {
  Token tagged = make_token("00000000000000bb", 8);
  tagged.tags = {"server"};
  ASSERT_TRUE(store_->add_token(tagged));
  auto r = store_->join_node(reg(1, "Laptop.local"), presented(tagged), 2000);
  ASSERT_TRUE(r);
  ASSERT_EQ(r->token, TokenCheck::ok);
  EXPECT_TRUE(r->created);
  const Node& n = r->node;
  EXPECT_EQ(n.node_key, key(1));
  EXPECT_EQ(n.disco_key, key(101));
  EXPECT_EQ(n.name, "laptop");
  EXPECT_EQ(n.hostname, "Laptop.local");
  EXPECT_EQ(n.os, "linux");
  EXPECT_EQ(n.ipv4.to_string(), "100.64.0.2");
  EXPECT_TRUE(n.ipv6.is_v6());
  EXPECT_EQ(n.tags, std::vector<std::string>{"server"});
  EXPECT_EQ(n.token_id, tagged.id);
  EXPECT_EQ(n.created_at, 2000);
  EXPECT_EQ(n.last_seen, 2000);
  EXPECT_TRUE(n.online);
  EXPECT_FALSE(n.disconnected_at);
  EXPECT_EQ((*store_->find_token(tagged.id))->uses, 1u);

  auto by_name = store_->find_node_by_name("laptop");
  ASSERT_TRUE(by_name && *by_name);
  EXPECT_EQ((*by_name)->node_key, key(1));
}

TEST_P(StoreTest, UnknownKeyWithoutTokenIsRefused) {
  auto r = store_->join_node(reg(1, "a"), std::nullopt, 2000);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->token, TokenCheck::unknown);
  EXPECT_TRUE(store_->list_nodes()->empty());

  PresentedToken wrong{token_.id, hash(99)};
  r = store_->join_node(reg(1, "a"), wrong, 2000);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->token, TokenCheck::unknown);
}

TEST_P(StoreTest, KnownKeyRejoinsWithoutTokenAndKeepsItsAddresses) {
  Node first = join(1, "laptop");
  NodeRegistration again = reg(1, "laptop");
  again.disco_key = key(55);  // a restarted agent makes a new disco key
  again.os = "linux 6.1";
  auto r = store_->join_node(again, std::nullopt, 3000);
  ASSERT_TRUE(r);
  ASSERT_EQ(r->token, TokenCheck::ok);
  EXPECT_FALSE(r->created);
  EXPECT_EQ(r->node.ipv4, first.ipv4);
  EXPECT_EQ(r->node.ipv6, first.ipv6);
  EXPECT_EQ(r->node.name, "laptop");
  EXPECT_EQ(r->node.disco_key, key(55));
  EXPECT_EQ(r->node.os, "linux 6.1");
  EXPECT_EQ(r->node.created_at, 2000);
  EXPECT_EQ(r->node.last_seen, 3000);
}

TEST_P(StoreTest, PresenceEndpointsAndRemoval) {
  join(1, "a");
  ASSERT_TRUE(store_->set_node_online(key(1), false, 2100));
  auto n = *store_->find_node(key(1));
  EXPECT_FALSE(n->online);
  EXPECT_EQ(n->disconnected_at, 2100);
  EXPECT_EQ(n->last_seen, 2100);

  ASSERT_TRUE(store_->set_node_online(key(1), true, 2200));
  n = *store_->find_node(key(1));
  EXPECT_TRUE(n->online);
  EXPECT_FALSE(n->disconnected_at);

  std::vector<Endpoint> endpoints = {Endpoint::parse("192.0.2.1:41641").value(),
                                     Endpoint::parse("[2001:db8::1]:41641").value()};
  ASSERT_TRUE(store_->set_node_endpoints(key(1), endpoints, "fra", 2300));
  ASSERT_TRUE(store_->touch_node(key(1), 2400));
  n = *store_->find_node(key(1));
  EXPECT_EQ(n->endpoints, endpoints);
  EXPECT_EQ(n->home_relay, "fra");
  EXPECT_EQ(n->last_seen, 2400);

  EXPECT_EQ(store_->set_node_online(key(9), true, 1).error().code, Errc::not_found);
  EXPECT_EQ(store_->touch_node(key(9), 1).error().code, Errc::not_found);
  EXPECT_EQ(store_->set_node_endpoints(key(9), {}, "", 1).error().code, Errc::not_found);

  auto removed = store_->remove_node("a");
  ASSERT_TRUE(removed);
  EXPECT_EQ(removed->node_key, key(1));
  EXPECT_FALSE(*store_->find_node(key(1)));
  EXPECT_EQ(store_->remove_node("a").error().code, Errc::not_found);

  // By node key (`knit logout`), noted as a change like the removal by name.
  const Node b = join(2, "b");
  auto by_key = store_->remove_node(key(2));
  ASSERT_TRUE(by_key);
  EXPECT_EQ(by_key->name, "b");
  EXPECT_EQ(by_key->ipv4, b.ipv4);
  EXPECT_FALSE(*store_->find_node(key(2)));
  EXPECT_FALSE(*store_->find_node_by_name("b"));
  EXPECT_EQ(store_->remove_node(key(2)).error().code, Errc::not_found);
}

TEST_P(StoreTest, RecordsAsTheControlProtocolShowsThem) {
  Node n = join(1, "a");
  ASSERT_TRUE(store_->set_node_endpoints(key(1), {Endpoint::parse("192.0.2.1:1").value()}, "fra", 2001));
  n = **store_->find_node(key(1));
  control::PeerInfo peer = peer_info(n);
  EXPECT_EQ(peer.name, "a");
  EXPECT_EQ(peer.node_key, key(1));
  EXPECT_EQ(peer.ipv4, n.ipv4);
  EXPECT_EQ(peer.home_relay, "fra");
  EXPECT_EQ(peer.last_seen, 2001);
  EXPECT_EQ(node_assignment(n).ipv6, n.ipv6);
  EXPECT_EQ(error_code(TokenCheck::used), control::ErrorCode::token_used);
  EXPECT_EQ(error_code(TokenCheck::wrong_kind), control::ErrorCode::token_invalid);
  Relay relay{"fra", key(40), {"relay.example.com:443"}, 3478, 1};
  EXPECT_EQ(relay_info(relay).addresses.at(0).to_string(), "relay.example.com:443");
}

TEST_P(StoreTest, MarkAllOfflineAtServerStart) {
  join(1, "a");
  join(2, "b");
  ASSERT_TRUE(store_->set_node_online(key(2), false, 2050));
  ASSERT_TRUE(store_->mark_all_offline(3000));
  auto a = *store_->find_node(key(1));
  auto b = *store_->find_node(key(2));
  EXPECT_FALSE(a->online);
  EXPECT_EQ(a->disconnected_at, 3000);
  EXPECT_EQ(b->disconnected_at, 2050);  // already offline: its grace period keeps running
}

TEST_P(StoreTest, RelaysRegisterWithRelayTokens) {
  Token relay_token = make_token("00000000000000cc", 3, false);
  relay_token.relay = true;
  ASSERT_TRUE(store_->add_token(relay_token));

  RelayRegistration fra{"fra", key(40), {"relay.example.com:443", "[2001:DB8::0:1]:443"}, 3478};
  // A node token does not register a relay, nor a relay token a node.
  auto wrong = store_->join_relay(fra, presented(token_), 100);
  ASSERT_TRUE(wrong);
  EXPECT_EQ(wrong->token, TokenCheck::wrong_kind);
  auto as_node = store_->join_node(reg(1, "a"), presented(relay_token), 100);
  ASSERT_TRUE(as_node);
  EXPECT_EQ(as_node->token, TokenCheck::wrong_kind);

  auto r = store_->join_relay(fra, presented(relay_token), 100);
  ASSERT_TRUE(r) << r.error().message;
  ASSERT_EQ(r->token, TokenCheck::ok);
  EXPECT_TRUE(r->created);
  EXPECT_EQ(r->relay.addresses,
            (std::vector<std::string>{"relay.example.com:443", "[2001:db8::1]:443"}));
  EXPECT_EQ(r->relay.stun_port, 3478);

  // The relay restarts and presents its one-use token again: not a second use.
  fra.stun_port = 3479;
  r = store_->join_relay(fra, presented(relay_token), 200);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->token, TokenCheck::ok);
  EXPECT_FALSE(r->created);
  EXPECT_EQ(r->relay.stun_port, 3479);
  EXPECT_EQ(r->relay.registered_at, 100);

  // Another relay cannot reuse the one-use token.
  RelayRegistration ams{"ams", key(41), {"ams.example.com:443"}, 0};
  r = store_->join_relay(ams, presented(relay_token), 300);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->token, TokenCheck::used);

  auto bad = store_->join_relay(RelayRegistration{"Bad Name", key(42), {"x:1"}, 0},
                                presented(relay_token), 300);
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().code, Errc::invalid);
  bad = store_->join_relay(RelayRegistration{"x", key(42), {"no-port"}, 0},
                           presented(relay_token), 300);
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().code, Errc::invalid);

  auto relays = store_->list_relays();
  ASSERT_TRUE(relays);
  ASSERT_EQ(relays->size(), 1u);
  EXPECT_EQ(relays->front().name, "fra");
  ASSERT_TRUE(store_->remove_relay("fra"));
  EXPECT_TRUE(store_->list_relays()->empty());
  EXPECT_EQ(store_->remove_relay("fra").error().code, Errc::not_found);
}

TEST_P(StoreTest, ARelayNameMovesToTheNewestKey) {
  Token relay_token = make_token("00000000000000cc", 3, true);
  relay_token.relay = true;
  ASSERT_TRUE(store_->add_token(relay_token));
  ASSERT_TRUE(
      store_->join_relay({"fra", key(40), {"a.example:443"}, 0}, presented(relay_token), 1));
  // Reinstalled with a new key under the same name.
  auto r = store_->join_relay({"fra", key(41), {"b.example:443"}, 0}, presented(relay_token), 2);
  ASSERT_TRUE(r);
  EXPECT_TRUE(r->created);
  auto relays = *store_->list_relays();
  ASSERT_EQ(relays.size(), 1u);
  EXPECT_EQ(relays[0].node_key, key(41));
}

// ---- concurrency: separate connections, as several coordinators (or a coordinator and the
// admin CLI) are ----

TEST_P(StoreTest, AOneUseTokenAdmitsExactlyOneOfManyConcurrentJoins) {
  Token once = make_token("00000000000000bb", 9, /*reusable=*/false);
  ASSERT_TRUE(store_->add_token(once));
  constexpr int kThreads = 8;
  std::atomic<int> admitted{0};
  std::atomic<int> used{0};
  std::atomic<int> failed{0};
  on_own_connections(kThreads, failed, [&](Store& conn, int t) {
    auto r = conn.join_node(reg(static_cast<std::uint8_t>(10 + t), "racer"), presented(once), 2000);
    if (!r) ++failed;
    else if (r->token == TokenCheck::ok) ++admitted;
    else if (r->token == TokenCheck::used) ++used;
  });
  EXPECT_EQ(failed, 0);
  EXPECT_EQ(admitted, 1);
  EXPECT_EQ(used, kThreads - 1);
  EXPECT_EQ(store_->list_nodes()->size(), 1u);
  EXPECT_EQ((*store_->find_token(once.id))->uses, 1u);
}

TEST_P(StoreTest, ConcurrentJoinsGetUniqueAddressesAndNames) {
  constexpr int kThreads = 4;
  constexpr int kEach = 15;
  std::atomic<int> failed{0};
  on_own_connections(kThreads, failed, [&](Store& conn, int t) {
    for (int i = 0; i < kEach; ++i) {
      const auto n = static_cast<std::uint8_t>(1 + t * kEach + i);
      auto r = conn.join_node(reg(n, "same-host"), presented(token_), 2000);
      if (!r || r->token != TokenCheck::ok) ++failed;
    }
  });
  EXPECT_EQ(failed, 0);
  expect_unique_nodes(static_cast<std::size_t>(kThreads * kEach));
}

TEST_P(StoreTest, AnotherCoordinatorDoesNotTakeThisOnesNodesOffline) {
  join(1, "a");  // connected through the store_ connection as coordinator one
  store_->set_coordinator_id("one:7443");
  ASSERT_TRUE(store_->set_node_online(key(1), true, 2001));
  auto other = open();
  ASSERT_TRUE(other);
  (*other)->set_coordinator_id("two:7443");
  ASSERT_TRUE((*other)->mark_all_offline(2002));
  ASSERT_TRUE((*other)->set_node_online(key(1), false, 2003));
  EXPECT_TRUE((*store_->find_node(key(1)))->online);
  // The node moves to coordinator two; one's late disconnect no longer counts.
  ASSERT_TRUE((*other)->set_node_online(key(1), true, 2004));
  ASSERT_TRUE(store_->set_node_online(key(1), false, 2005));
  EXPECT_TRUE((*store_->find_node(key(1)))->online);
  ASSERT_TRUE((*other)->set_node_online(key(1), false, 2006));
  EXPECT_FALSE((*store_->find_node(key(1)))->online);
}

// ---- joins in a batch (one transaction per turn of the server's loop) ----

TEST_P(StoreTest, ABatchOfJoinsGivesEachItsOwnResult) {
  Token once = make_token("00000000000000bb", 9, /*reusable=*/false);
  ASSERT_TRUE(store_->add_token(once));
  join(1, "known");
  const std::vector<Endpoint> endpoints = {Endpoint::parse("192.0.2.7:41641").value()};
  std::vector<BatchedJoin> batch;
  batch.push_back({reg(2, "new"), presented(token_), endpoints});
  batch.push_back({reg(3, "first"), presented(once), {}});
  batch.push_back({reg(4, "second"), presented(once), {}});    // the one-use token is used
  batch.push_back({reg(5, "stranger"), std::nullopt, {}});     // unknown key, no token
  batch.push_back({reg(1, "known"), std::nullopt, endpoints});  // re-joins, new endpoints
  batch.push_back({reg(6, "bad"), PresentedToken{token_.id, hash(99)}, {}});
  auto results = store_->join_nodes(batch, 3000);
  ASSERT_EQ(results.size(), batch.size());
  for (const auto& r : results) ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(results[0]->token, TokenCheck::ok);
  EXPECT_TRUE(results[0]->created);
  EXPECT_EQ(results[0]->node.endpoints, endpoints);
  EXPECT_EQ(results[1]->token, TokenCheck::ok);
  EXPECT_EQ(results[2]->token, TokenCheck::used);
  EXPECT_EQ(results[3]->token, TokenCheck::unknown);
  EXPECT_EQ(results[4]->token, TokenCheck::ok);
  EXPECT_FALSE(results[4]->created);
  EXPECT_EQ(results[5]->token, TokenCheck::unknown);
  // What was stored is what join_node would have stored, one by one.
  auto nodes = store_->list_nodes();
  ASSERT_TRUE(nodes);
  std::set<std::string> names;
  std::set<IpAddress> v4;
  for (const Node& n : *nodes) {
    names.insert(n.name);
    v4.insert(n.ipv4);
  }
  EXPECT_EQ(names, (std::set<std::string>{"known", "new", "first"}));
  EXPECT_EQ(v4.size(), 3u);
  EXPECT_EQ((*store_->find_node(key(2)))->endpoints, endpoints);
  EXPECT_EQ((*store_->find_node(key(1)))->endpoints, endpoints);
  EXPECT_TRUE((*store_->find_node(key(2)))->online);
  EXPECT_EQ((*store_->find_token(once.id))->uses, 1u);
  EXPECT_FALSE(*store_->find_node(key(4)));
}

// Coordinators storing batches at once on one database: every join lands once, with a unique
// name and address (on PostgreSQL a batch that loses a race on a name runs again whole).
TEST_P(StoreTest, ConcurrentBatchesGetUniqueAddressesAndNames) {
  constexpr int kThreads = 3;
  constexpr int kBatches = 4;
  constexpr int kEach = 5;
  std::atomic<int> failed{0};
  on_own_connections(kThreads, failed, [&](Store& conn, int t) {
    for (int b = 0; b < kBatches; ++b) {
      std::vector<BatchedJoin> batch;
      for (int i = 0; i < kEach; ++i) {
        const auto n = static_cast<std::uint8_t>(1 + (t * kBatches + b) * kEach + i);
        batch.push_back({reg(n, "same-host"), presented(token_), {}});
      }
      for (const auto& r : conn.join_nodes(batch, 2000))
        if (!r || r->token != TokenCheck::ok) ++failed;
    }
  });
  EXPECT_EQ(failed, 0);
  expect_unique_nodes(static_cast<std::size_t>(kThreads * kBatches * kEach));
}

// ---- coordinators' leases ----

TEST_P(StoreTest, ADeadCoordinatorsNodesGoOfflineWhenItsLeaseRunsOut) {
  join(1, "a");
  join(2, "b");
  join(3, "c");
  auto other = open();
  ASSERT_TRUE(other);
  Store& two = **other;
  store_->set_coordinator_id("host/one:7443");
  two.set_coordinator_id("host/two:7443");
  EXPECT_FALSE(*store_->renew_lease(2000, 30));  // a first lease
  EXPECT_TRUE(*store_->renew_lease(2010, 30));   // renewed: held
  EXPECT_FALSE(*two.renew_lease(2010, 30));
  // a and b on one, c on two.
  ASSERT_TRUE(store_->set_node_online(key(1), true, 2011));
  ASSERT_TRUE(store_->set_node_online(key(2), true, 2011));
  ASSERT_TRUE(two.set_node_online(key(3), true, 2011));
  // One's lease runs to 2040: not expired at 2040, expired after; a coordinator never expires
  // its own.
  EXPECT_TRUE(two.expire_leases(2040)->coordinators.empty());
  ASSERT_TRUE(two.renew_lease(2041, 30));
  EXPECT_TRUE(store_->expire_leases(2060)->coordinators.empty());
  EXPECT_TRUE((*two.find_node(key(1)))->online);
  auto expired = two.expire_leases(2041);
  ASSERT_TRUE(expired) << expired.error().message;
  EXPECT_EQ(expired->coordinators, std::vector<std::string>{"host/one:7443"});
  std::set<wg::PublicKey> nodes(expired->nodes.begin(), expired->nodes.end());
  EXPECT_EQ(nodes, (std::set<wg::PublicKey>{key(1), key(2)}));
  auto a = *two.find_node(key(1));
  EXPECT_FALSE(a->online);
  EXPECT_EQ(a->disconnected_at, 2041);  // an ephemeral node's grace starts
  EXPECT_TRUE((*two.find_node(key(3)))->online);
  // Once only: the lease is gone.
  EXPECT_TRUE(two.expire_leases(2042)->coordinators.empty());
  // a reconnects to two: online, two's.
  ASSERT_TRUE(two.set_node_online(key(1), true, 2043));
  EXPECT_TRUE((*two.find_node(key(1)))->online);
  // One was only stalled: its renewal says it had lost the lease; b is still connected to it.
  EXPECT_FALSE(*store_->renew_lease(2050, 30));
  ASSERT_TRUE(store_->set_node_online(key(2), true, 2050));
  EXPECT_TRUE((*two.find_node(key(2)))->online);
  // A clean stop leaves no lease behind to expire.
  ASSERT_TRUE(store_->release_lease());
  EXPECT_TRUE(two.expire_leases(9999)->coordinators.empty());
  EXPECT_TRUE((*two.find_node(key(2)))->online);
}

TEST_P(StoreTest, ALeaseExpiryIsNotedForTheOtherCoordinators) {
  join(1, "a");
  store_->set_coordinator_id("one");
  ASSERT_TRUE(store_->renew_lease(2000, 10));
  ASSERT_TRUE(store_->set_node_online(key(1), true, 2000));
  auto other = open();
  ASSERT_TRUE(other);
  (*other)->set_coordinator_id("two");
  // A third connection reads the notes the expiry wrote (another coordinator's change feed).
  auto reader = open();
  ASSERT_TRUE(reader);
  if (GetParam() == StoreBackend::sqlite) {
    auto& sqlite = static_cast<SqliteStore&>(**reader);
    std::uint64_t cursor = *sqlite.latest_change();
    ASSERT_EQ((*other)->expire_leases(2011)->nodes.size(), 1u);
    auto notes = sqlite.changes_after(cursor);
    ASSERT_TRUE(notes);
    EXPECT_EQ(*notes, (std::vector<StoreChange>{{StoreChange::Kind::node, key(1)}}));
  } else {
    auto& pg = static_cast<PgStore&>(**reader);
    ASSERT_TRUE(pg.connection().exec(std::string("LISTEN ") + std::string(kNotifyChannel)));
    ASSERT_EQ((*other)->expire_leases(2011)->nodes.size(), 1u);
    PGnotify* note = nullptr;
    for (int i = 0; i < 200 && note == nullptr; ++i) {
      ASSERT_EQ(PQconsumeInput(pg.connection().handle()), 1);
      note = PQnotifies(pg.connection().handle());
      if (note == nullptr) std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    ASSERT_NE(note, nullptr);
    EXPECT_NE(std::string(note->extra).find(to_base64(key(1))), std::string::npos) << note->extra;
    PQfreemem(note);
  }
}

// ---- moving a mesh (migrate) ----

TEST_P(StoreTest, AMeshMovesWholeIntoAnEmptyStore) {
  Token tagged = make_token("00000000000000cc", 3, false);
  tagged.tags = {"server"};
  tagged.expires_at = 99999;
  ASSERT_TRUE(store_->add_token(tagged));
  join(1, "alpha");
  join(2, "beta");
  ASSERT_TRUE(store_->join_node(reg(3, "gamma"), presented(tagged), 2001));
  ASSERT_TRUE(store_->set_node_endpoints(key(2), {Endpoint::parse("192.0.2.9:41641").value()}, "", 2002));
  Token relay_token = make_token("00000000000000dd", 4);
  relay_token.relay = true;
  ASSERT_TRUE(store_->add_token(relay_token));
  ASSERT_TRUE(store_->join_relay({"fra", key(40), {"relay.example:443"}, 3478},
                                 presented(relay_token), 2003));
  ASSERT_TRUE(store_->remove_node("alpha"));
  ASSERT_TRUE(store_->set_listen_address("coord.example:7443"));

  // Into the other backend.
  TempDir target_dir;
  std::unique_ptr<Store> target;
  if (GetParam() == StoreBackend::sqlite) {
    auto& pg = knit::testing::PostgresServer::instance();
    if (!pg.available()) GTEST_SKIP() << pg.why();
    auto t = PgStore::open(pg.fresh_database());
    ASSERT_TRUE(t) << t.error().message;
    target = std::move(*t);
  } else {
    auto t = SqliteStore::open(target_dir.db());
    ASSERT_TRUE(t);
    target = std::move(*t);
  }
  auto moved = migrate_store(*store_, *target);
  ASSERT_TRUE(moved) << moved.error().message;
  auto before = store_->list_nodes();
  auto after = target->list_nodes();
  ASSERT_TRUE(before && after);
  ASSERT_EQ(after->size(), 2u);
  for (std::size_t i = 0; i < before->size(); ++i) {
    EXPECT_EQ((*after)[i].node_key, (*before)[i].node_key);
    EXPECT_EQ((*after)[i].disco_key, (*before)[i].disco_key);
    EXPECT_EQ((*after)[i].name, (*before)[i].name);
    EXPECT_EQ((*after)[i].ipv4, (*before)[i].ipv4);
    EXPECT_EQ((*after)[i].ipv6, (*before)[i].ipv6);
    EXPECT_EQ((*after)[i].tags, (*before)[i].tags);
    EXPECT_EQ((*after)[i].endpoints, (*before)[i].endpoints);
    EXPECT_FALSE((*after)[i].online);  // nobody is connected to the new store yet
  }
  EXPECT_EQ(*target->mesh_settings(), *store_->mesh_settings());
  EXPECT_EQ(**target->listen_address(), "coord.example:7443");
  EXPECT_EQ(target->list_tokens()->size(), 3u);
  EXPECT_EQ((*target->find_token(tagged.id))->uses, 1u);
  EXPECT_EQ(target->list_relays()->size(), 1u);
  // The one-use token stays used; a known key re-joins with its addresses; a new node gets an
  // address nobody has (the free ranges were rebuilt), and not alpha's freed one at once.
  EXPECT_EQ(target->join_node(reg(9, "x"), presented(tagged), 3000)->token, TokenCheck::used);
  auto beta = target->join_node(reg(2, "beta"), std::nullopt, 3000);
  ASSERT_TRUE(beta && beta->token == TokenCheck::ok);
  EXPECT_EQ(beta->node.ipv4, (*before)[0].ipv4);
  auto fresh = target->join_node(reg(7, "delta"), presented(token_), 3000);
  ASSERT_TRUE(fresh && fresh->token == TokenCheck::ok);
  for (const Node& n : *before) EXPECT_NE(fresh->node.ipv4, n.ipv4);
  // Not into a store that already holds a mesh.
  EXPECT_EQ(migrate_store(*store_, *target).error().code, Errc::conflict);
}

INSTANTIATE_TEST_SUITE_P(Backends, StoreTest,
                         ::testing::Values(StoreBackend::sqlite, StoreBackend::postgres),
                         backend_name);

}  // namespace
}  // namespace knit::coordinator
