// What one backend of the coordinator's store does alone (the suite both run is
// coordinator_store_test). SQLite: reopening, schema migration from v1, the change log between two
// connections, the state directory's mode. PostgreSQL (skipped, with the reason, only where the
// postgresql package is not installed): a connection lost mid-transaction leaves nothing
// half-written, the store carries on after the server restarts, and a batch of joins after a
// lost connection lands once.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <filesystem>
#include <set>

#include "tests/support/postgres_server.hpp"
#include "tests/support/store_rows.hpp"
#include "tests/support/temp_dir.hpp"
#include "base/random.hpp"
#include "coordinator/migrations.hpp"
#include "coordinator/pg_conn.hpp"
#include "coordinator/pg_store.hpp"
#include "coordinator/sqlite_store.hpp"
#include "coordinator/state_dir.hpp"

namespace knit::coordinator {
namespace {

namespace fs = std::filesystem;

using knit::testing::TempDir;
using namespace knit::coordinator::testing;

// ---- PostgreSQL: losing the connection ----

class PgOutage : public ::testing::Test {
 protected:
  void SetUp() override {
    auto& pg = knit::testing::PostgresServer::instance();
    if (!pg.available()) GTEST_SKIP() << pg.why();
    conninfo_ = pg.fresh_database();
  }
  std::string conninfo_;
};

// The backend is killed between two statements of a transaction: PostgreSQL rolls back the
// first, the connection reconnects, and the whole body runs again, so each row is there once.
TEST_F(PgOutage, AConnectionLostMidTransactionLeavesNothingHalfWritten) {
  PgConnection conn(conninfo_);
  ASSERT_TRUE(conn.connect());
  ASSERT_TRUE(conn.exec_script("CREATE TABLE pair (id INT PRIMARY KEY, half TEXT)"));
  PgConnection killer(conninfo_);
  ASSERT_TRUE(killer.connect());
  int runs = 0;
  auto done = conn.run_transaction([&]() -> Result<void> {
    ++runs;
    if (auto r = conn.exec("INSERT INTO pair VALUES (1, 'first')"); !r) return r.error();
    if (runs == 1) {
      auto r = killer.exec("SELECT pg_terminate_backend($1)",
                           {std::to_string(PQbackendPID(conn.handle()))});
      EXPECT_TRUE(r);
    }
    if (auto r = conn.exec("INSERT INTO pair VALUES (2, 'second')"); !r) return r.error();
    return Ok{};
  });
  ASSERT_TRUE(done) << done.error().message;
  EXPECT_EQ(runs, 2);
  auto rows = killer.exec("SELECT id FROM pair ORDER BY id");
  ASSERT_TRUE(rows);
  ASSERT_EQ(rows->rows(), 2);
  EXPECT_EQ(rows->integer(0, 0), 1);
  EXPECT_EQ(rows->integer(1, 0), 2);
}

TEST_F(PgOutage, TheStoreCarriesOnAfterTheServerRestarts) {
  auto store = PgStore::open(conninfo_);
  ASSERT_TRUE(store);
  SeededRandom rng(1);
  ASSERT_TRUE((*store)->ensure_mesh(std::nullopt, rng));
  ASSERT_TRUE((*store)->add_token(make_token("00000000000000aa", 1)));
  ASSERT_TRUE(knit::testing::PostgresServer::instance().restart());
  auto r = (*store)->join_node(reg(1, "a"), PresentedToken{"00000000000000aa", hash(1)}, 10);
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(r->token, TokenCheck::ok);
  EXPECT_EQ((*store)->list_nodes()->size(), 1u);
}

// A batch of joins (Store::join_nodes) whose connection was lost (every backend of the database
// terminated, as a failover does): the batch reconnects and runs once, each join with its own
// result, a one-use token used once, every node stored once with its own address.
TEST_F(PgOutage, ABatchOfJoinsAfterALostConnectionLandsOnce) {
  auto store = PgStore::open(conninfo_);
  ASSERT_TRUE(store);
  SeededRandom rng(1);
  ASSERT_TRUE((*store)->ensure_mesh(std::nullopt, rng));
  Token many = make_token("00000000000000aa", 1, /*reusable=*/true);
  Token once = make_token("00000000000000bb", 2, /*reusable=*/false);
  ASSERT_TRUE((*store)->add_token(many));
  ASSERT_TRUE((*store)->add_token(once));
  ASSERT_TRUE((*store)->list_nodes());  // the connection is up and used
  PgConnection killer(conninfo_);
  ASSERT_TRUE(killer.connect());
  auto killed = killer.exec("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                            "WHERE datname = current_database() AND pid <> pg_backend_pid()");
  ASSERT_TRUE(killed);
  ASSERT_GE(killed->integer(0, 0), 1);
  std::vector<BatchedJoin> batch;
  for (int i = 1; i <= 3; ++i) batch.push_back({reg(i, "m" + std::to_string(i)), PresentedToken{many.id, hash(1)}, {}});
  batch.push_back({reg(4, "first"), PresentedToken{once.id, hash(2)}, {}});
  batch.push_back({reg(5, "second"), PresentedToken{once.id, hash(2)}, {}});
  auto results = (*store)->join_nodes(batch, 10);
  ASSERT_EQ(results.size(), batch.size());
  for (const auto& r : results) ASSERT_TRUE(r) << r.error().message;
  for (int i = 0; i < 4; ++i) EXPECT_EQ(results[static_cast<std::size_t>(i)]->token, TokenCheck::ok) << i;
  EXPECT_EQ(results[4]->token, TokenCheck::used);
  auto nodes = (*store)->list_nodes();
  ASSERT_TRUE(nodes);
  ASSERT_EQ(nodes->size(), 4u);
  std::set<IpAddress> v4;
  for (const Node& n : *nodes) v4.insert(n.ipv4);
  EXPECT_EQ(v4.size(), 4u);
}

TEST(StoreReopen, StateSurvivesReopening) {
  TempDir dir;
  SeededRandom rng(1);
  IpPrefix ula;
  {
    auto store = SqliteStore::open(dir.db());
    ASSERT_TRUE(store);
    ula = (*store)->ensure_mesh(std::nullopt, rng)->ipv6_prefix;
    ASSERT_TRUE((*store)->add_token(make_token("00000000000000aa", 1)));
    auto r = (*store)->join_node(reg(1, "a"), PresentedToken{"00000000000000aa", hash(1)}, 10);
    ASSERT_TRUE(r && r->token == TokenCheck::ok);
  }
  auto store = SqliteStore::open(dir.db());
  ASSERT_TRUE(store);
  EXPECT_EQ((*(*store)->mesh_settings())->ipv6_prefix, ula);
  auto nodes = (*store)->list_nodes();
  ASSERT_TRUE(nodes);
  ASSERT_EQ(nodes->size(), 1u);
  EXPECT_EQ(nodes->front().name, "a");
  EXPECT_EQ((*(*store)->find_token("00000000000000aa"))->uses, 1u);
}

TEST(StoreMigrations, AVersionOneDatabaseIsMigratedKeepingItsRows) {
  TempDir dir;
  {
    auto db = Database::open(dir.db());
    ASSERT_TRUE(db);
    ASSERT_TRUE(migrate(*db, 1));
    EXPECT_EQ(*schema_version(*db), 1);
    // Rows as a v1 coordinator wrote them: no disconnected_at, no relays table.
    ASSERT_TRUE(db->exec(
        "INSERT INTO settings VALUES ('ipv4_prefix', '100.64.0.0/10'), "
        "('ipv6_prefix', 'fd11:2233:4455::/48'), ('ipv4_cursor', '1681915907');"
        "INSERT INTO tokens (id, secret_hash, reusable, tags, created_at) VALUES "
        "('00000000000000aa', zeroblob(32), 1, 'server', 5);"
        "INSERT INTO nodes (node_key, disco_key, name, hostname, ipv4, ipv6, token_id, "
        "created_at, ephemeral) VALUES ('AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=', "
        "'AgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgI=', 'old', 'old', '100.64.0.2', "
        "'fd11:2233:4455::6440:2', '00000000000000aa', 5, 1);"));
    auto relays = db->prepare("SELECT 1 FROM relays");
    EXPECT_FALSE(relays);  // not in v1
  }
  auto store = SqliteStore::open(dir.db());
  ASSERT_TRUE(store) << store.error().message;
  {
    auto db = Database::open(dir.db());
    EXPECT_EQ(*schema_version(*db), latest_schema_version());
  }
  auto node = (*store)->find_node_by_name("old");
  ASSERT_TRUE(node && *node);
  EXPECT_EQ((*node)->ipv4.to_string(), "100.64.0.2");
  EXPECT_EQ((*node)->node_key, key(1));
  EXPECT_FALSE((*node)->disconnected_at);
  // The v2 features work on the migrated rows.
  ASSERT_TRUE((*store)->set_node_online(key(1), false, 100));
  auto gone = (*store)->expire_ephemeral(100 + kDefaultEphemeralGrace, kDefaultEphemeralGrace);
  ASSERT_TRUE(gone);
  EXPECT_EQ(gone->size(), 1u);
  EXPECT_TRUE((*store)->list_relays());
}

TEST(StoreMigrations, ANewerDatabaseIsRefused) {
  TempDir dir;
  {
    auto db = Database::open(dir.db());
    ASSERT_TRUE(migrate(*db));
    ASSERT_TRUE(db->exec("INSERT INTO schema_version (version) VALUES (999)"));
  }
  auto store = SqliteStore::open(dir.db());
  ASSERT_FALSE(store);
  EXPECT_EQ(store.error().code, Errc::newer_schema);
}

TEST(StoreMigrations, StepsAreNumberedInOrder) {
  int expected = 1;
  for (const auto& step : migrations()) EXPECT_EQ(step.version, expected++);
  EXPECT_EQ(latest_schema_version(), expected - 1);
}

TEST(StoreConnections, AdminAndServerSeeEachOthersChanges) {
  TempDir dir;
  SeededRandom rng(3);
  auto server = SqliteStore::open(dir.db());
  auto admin = SqliteStore::open(dir.db());
  ASSERT_TRUE(server && admin);
  ASSERT_TRUE((*server)->ensure_mesh(std::nullopt, rng));

  std::uint64_t cursor = *(*server)->latest_change();
  std::uint64_t seen = *(*server)->data_version();
  // The server's own writes do not move its data version, and its own notes are skipped.
  ASSERT_TRUE((*server)->set_listen_address("192.0.2.1:7443"));
  EXPECT_EQ(*(*server)->data_version(), seen);

  // An admin command creates a token: the server's data version moves (tokens are not noted:
  // agents do not see them) and it finds the token.
  ASSERT_TRUE((*admin)->add_token(make_token("00000000000000aa", 1)));
  EXPECT_NE(*(*server)->data_version(), seen);
  auto r = (*server)->join_node(reg(1, "a"), PresentedToken{"00000000000000aa", hash(1)}, 10);
  ASSERT_TRUE(r && r->token == TokenCheck::ok);
  EXPECT_EQ((*admin)->list_nodes()->size(), 1u);
  EXPECT_EQ(**(*admin)->listen_address(), "192.0.2.1:7443");
  EXPECT_TRUE((*server)->changes_after(cursor)->empty());  // its own join

  // The admin removes the node: the server reads a note about exactly that node.
  ASSERT_TRUE((*admin)->remove_node("a"));
  auto changes = (*server)->changes_after(cursor);
  ASSERT_TRUE(changes);
  EXPECT_EQ(*changes, (std::vector<StoreChange>{{StoreChange::Kind::node, key(1)}}));
  EXPECT_TRUE((*server)->changes_after(cursor)->empty());  // read once
  EXPECT_FALSE(*(*server)->find_node(key(1)));
  // The admin's view of the same notes has the server's join and not its own removal.
  std::uint64_t from_start = 0;
  EXPECT_EQ(*(*admin)->changes_after(from_start),
            (std::vector<StoreChange>{{StoreChange::Kind::node, key(1)}}));
}

TEST(StateDir, IsCreatedPrivate) {
  TempDir dir;
  fs::path state = dir.path() / "nested" / "state";
  EXPECT_FALSE(has_state(state));
  ASSERT_TRUE(prepare_state_dir(state));
  struct stat st {};
  ASSERT_EQ(::stat(state.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0700u);
  auto store = open_store(state);
  ASSERT_TRUE(store);
  EXPECT_TRUE(has_state(state));
}

}  // namespace
}  // namespace knit::coordinator
