// Two coordinators (Servers) on one real PostgreSQL (tests/support/postgres_server.hpp): an
// agent of one sees what happens through the other within 2 s — a join, new endpoints, a node
// removed by an admin; the nodes of a coordinator that stops dead go offline for the other's
// agents once its lease runs out; and a server whose store connection is cut off keeps serving
// once the database is back. Skipped, with the reason, where the postgresql package is not
// installed.
#include <future>

#include "tests/support/coordinator_server_fixture.hpp"
#include "tests/support/postgres_server.hpp"

#include "coordinator/pg_store.hpp"

namespace knit::coordinator {
namespace {

// One coordinator: its own store connection, event loop and thread.
struct Coordinator {
  std::unique_ptr<PgStore> store;
  asio::io_context io;
  std::unique_ptr<Server> server;
  std::thread thread;
  SystemRandom rng;

  ~Coordinator() {
    if (!server) return;
    asio::post(io, [this] { server->stop(); });
    thread.join();
  }
};

class TwoCoordinators : public ::testing::Test {
 protected:
  void SetUp() override {
    auto& pg = knit::testing::PostgresServer::instance();
    if (!pg.available()) GTEST_SKIP() << pg.why();
    conninfo_ = pg.fresh_database();
    auto admin = PgStore::open(conninfo_);
    ASSERT_TRUE(admin) << admin.error().message;
    admin_ = std::move(*admin);
    auto mesh = admin_->ensure_mesh(std::nullopt, rng_);
    ASSERT_TRUE(mesh);
    mesh_ = *mesh;
    key_ = wg::crypto::generate_private_key(rng_);
    public_key_ = wg::crypto::public_key_of(key_);
    for (int i = 0; i < 2; ++i) start(coordinators_[i], "coordinator-" + std::to_string(i));
  }

  // A coordinator whose loop stops dead (kill -9, a frozen host): nothing it holds is released.
  static void stall(Coordinator& c) {
    c.io.stop();
    c.thread.join();
  }
  static void resume(Coordinator& c) {
    c.io.restart();
    c.thread = std::thread([&c] { c.io.run(); });
  }
  // The server's counters, read on its own loop.
  static ServerCounters counters_of(Coordinator& c) {
    std::promise<ServerCounters> got;
    asio::post(c.io, [&] { got.set_value(c.server->counters()); });
    return got.get_future().get();
  }

  void start(Coordinator& c, const std::string& id) {
    auto store = PgStore::open(conninfo_);
    ASSERT_TRUE(store) << store.error().message;
    c.store = std::move(*store);
    ServerOptions options;
    options.coordinator_id = id;
    options.publish_delay = std::chrono::milliseconds(10);
    options.lease_duration = 1;  // whole seconds: runs out 1-2 s after the last renewal
    options.lease_renew_interval = std::chrono::milliseconds(200);
    c.server = std::make_unique<Server>(c.io, *c.store, key_, mesh_, c.rng, options);
    c.server->start(asio::ip::tcp::endpoint(asio::ip::address_v4::loopback(), 0));
    c.thread = std::thread([&c] { c.io.run(); });
  }

  std::uint16_t port(int i) { return coordinators_[i].server->local_endpoint().port(); }

  std::unique_ptr<Agent> joined(int coordinator, const std::string& hostname) {
    TokenOptions options;
    options.reusable = true;
    auto issued = issue_token(*admin_, options, {control::HostPort{"127.0.0.1", port(coordinator)}},
                              public_key_, rng_, kStart);
    EXPECT_TRUE(issued);
    auto a = std::make_unique<Agent>(port(coordinator), public_key_,
                                     wg::crypto::generate_private_key(rng_));
    auto response = a->join(issued->text, hostname);
    EXPECT_TRUE(response && response->ok);
    EXPECT_TRUE(a->wait_until([&] { return a->have_map(); }));
    return a;
  }

  std::string conninfo_;
  SystemRandom rng_;
  std::unique_ptr<PgStore> admin_;
  MeshSettings mesh_;
  wg::PrivateKey key_;
  wg::PublicKey public_key_{};
  Coordinator coordinators_[2];
};

TEST_F(TwoCoordinators, WhatHappensThroughOneReachesTheAgentsOfTheOther) {
  auto a = joined(0, "alpha");  // on coordinator 0
  auto b = joined(1, "beta");   // on coordinator 1
  // a's join went through coordinator 0; b's map came from coordinator 1 and has it.
  ASSERT_TRUE(b->wait_until([&] { return b->peer(a->public_key()) != nullptr; }, 2000ms));
  ASSERT_TRUE(a->wait_until([&] { return a->peer(b->public_key()) != nullptr; }, 2000ms));
  EXPECT_TRUE(b->peer(a->public_key())->online);

  // New endpoints reported to coordinator 1 reach coordinator 0's agent.
  const std::vector<Endpoint> endpoints = {Endpoint::parse("192.0.2.44:41641").value()};
  ASSERT_TRUE(b->send(control::EndpointUpdate{endpoints}));
  ASSERT_TRUE(a->wait_until(
      [&] { return a->peer(b->public_key()) && a->peer(b->public_key())->endpoints == endpoints; },
      2000ms));

  // An admin removes alpha: both coordinators' agents forget it, and alpha is told.
  auto c = joined(1, "gamma");
  ASSERT_TRUE(admin_->remove_node("alpha"));
  ASSERT_TRUE(b->wait_until([&] { return b->peer(a->public_key()) == nullptr; }, 2000ms));
  ASSERT_TRUE(c->wait_until([&] { return c->peer(a->public_key()) == nullptr; }, 2000ms));
  EXPECT_TRUE(a->closed_by_server(2000ms));
  EXPECT_FALSE(b->map_broken());
  EXPECT_FALSE(c->map_broken());

  // A node leaving coordinator 1 goes offline for coordinator 0's agents too (one that stays
  // connected elsewhere would not: see the store suite).
  auto d = joined(0, "delta");
  ASSERT_TRUE(d->wait_until([&] { return d->peer(c->public_key()) != nullptr; }, 2000ms));
  c->disconnect();
  ASSERT_TRUE(d->wait_until(
      [&] { return d->peer(c->public_key()) && !d->peer(c->public_key())->online; }, 2000ms));
}

TEST_F(TwoCoordinators, ADeadCoordinatorsNodesGoOfflineForTheOthersAgents) {
  auto a = joined(0, "alpha");  // on coordinator 0
  auto b = joined(1, "beta");   // on coordinator 1
  ASSERT_TRUE(b->wait_until(
      [&] { return b->peer(a->public_key()) && b->peer(a->public_key())->online; }, 2000ms));
  // Coordinator 0 stops dead with alpha connected: its lease runs out and coordinator 1 takes
  // alpha offline, which beta hears as a delta.
  stall(coordinators_[0]);
  ASSERT_TRUE(b->wait_until([&] { return !b->peer(a->public_key())->online; }, 5000ms));
  auto row = admin_->find_node(a->public_key());
  ASSERT_TRUE(row && *row);
  EXPECT_FALSE((*row)->online);
  const ServerCounters survivor = counters_of(coordinators_[1]);
  EXPECT_EQ(survivor.leases_expired, 1u);
  EXPECT_EQ(survivor.lease_nodes_offline, 1u);
  // It was only frozen: on its next renewal it finds its lease taken and says again that the
  // node still connected to it is online.
  resume(coordinators_[0]);
  ASSERT_TRUE(b->wait_until([&] { return b->peer(a->public_key())->online; }, 3000ms));
  EXPECT_EQ(counters_of(coordinators_[0]).lease_lost, 1u);
  EXPECT_FALSE(b->map_broken());
}

TEST_F(TwoCoordinators, ServersCarryOnAfterTheDatabaseRestarts) {
  auto a = joined(0, "alpha");
  ASSERT_TRUE(knit::testing::PostgresServer::instance().restart());
  // Both the store connection and the change feed reconnect; a join through the other
  // coordinator still reaches alpha.
  auto b = joined(1, "beta");
  ASSERT_TRUE(a->wait_until([&] { return a->peer(b->public_key()) != nullptr; }, 5000ms));
}

}  // namespace
}  // namespace knit::coordinator
