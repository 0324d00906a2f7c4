// Ephemeral nodes leave the mesh once they have been offline longer than the grace period;
// other nodes never do. Driven by a manual clock.
#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>

#include "base/random.hpp"
#include "coordinator/sqlite_store.hpp"

namespace knit::coordinator {
namespace {

namespace fs = std::filesystem;

wg::PublicKey key(std::uint8_t n) {
  wg::PublicKey k{};
  k.fill(n);
  return k;
}

class Ephemeral : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string pattern = (fs::temp_directory_path() / "knit-eph-XXXXXX").string();
    dir_ = ::mkdtemp(pattern.data());
    auto s = SqliteStore::open((dir_ / "knit.db").string());
    ASSERT_TRUE(s);
    store_ = std::move(*s);
    ASSERT_TRUE(store_->ensure_mesh(std::nullopt, rng_));
    for (bool ephemeral : {true, false}) {
      Token t;
      t.id = ephemeral ? "00000000000000ee" : "00000000000000aa";
      t.secret_hash.fill(1);
      t.reusable = true;
      t.ephemeral = ephemeral;
      ASSERT_TRUE(store_->add_token(t));
    }
  }
  void TearDown() override {
    store_.reset();
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }
  void join(std::uint8_t n, bool ephemeral) {
    SecretHash h{};
    h.fill(1);
    auto r = store_->join_node(
        NodeRegistration{key(n), key(n), "n" + std::to_string(n), ""},
        PresentedToken{ephemeral ? "00000000000000ee" : "00000000000000aa", h}, now_);
    ASSERT_TRUE(r && r->token == TokenCheck::ok);
    EXPECT_EQ(r->node.ephemeral, ephemeral);
  }
  std::vector<std::string> expire(UnixSeconds grace = kDefaultEphemeralGrace) {
    auto gone = store_->expire_ephemeral(now_, grace);
    EXPECT_TRUE(gone);
    std::vector<std::string> names;
    for (const auto& n : *gone) names.push_back(n.name);
    return names;
  }

  fs::path dir_;
  SeededRandom rng_{8};
  UnixSeconds now_ = 1'700'000'000;
  std::unique_ptr<SqliteStore> store_;
};

TEST_F(Ephemeral, RemovedOnlyAfterTheGraceWhileOffline) {
  join(1, true);
  join(2, false);
  now_ += 3600;
  EXPECT_TRUE(expire().empty());  // online: no matter how long

  ASSERT_TRUE(store_->set_node_online(key(1), false, now_));
  ASSERT_TRUE(store_->set_node_online(key(2), false, now_));
  now_ += kDefaultEphemeralGrace - 1;
  EXPECT_TRUE(expire().empty());
  now_ += 1;
  EXPECT_EQ(expire(), std::vector<std::string>{"n1"});
  EXPECT_FALSE(*store_->find_node(key(1)));
  EXPECT_TRUE(*store_->find_node(key(2)));  // not ephemeral: stays however long it is away
  now_ += 365 * 86400;
  EXPECT_TRUE(expire().empty());
}

TEST_F(Ephemeral, ReconnectingInTimeCancelsTheExpiry) {
  join(1, true);
  ASSERT_TRUE(store_->set_node_online(key(1), false, now_));
  now_ += 60;
  ASSERT_TRUE(store_->set_node_online(key(1), true, now_));
  now_ += kDefaultEphemeralGrace * 2;
  EXPECT_TRUE(expire().empty());
}

TEST_F(Ephemeral, TheGraceIsConfigurable) {
  join(1, true);
  ASSERT_TRUE(store_->set_node_online(key(1), false, now_));
  now_ += 30;
  EXPECT_TRUE(expire(31).empty());
  EXPECT_EQ(expire(30), std::vector<std::string>{"n1"});
}

TEST_F(Ephemeral, NodesLeftOnlineByACrashExpireAfterRestart) {
  join(1, true);  // joined, then the server died without marking it offline
  now_ += 86400;
  ASSERT_TRUE(store_->mark_all_offline(now_));  // the next server start
  EXPECT_TRUE(expire().empty());
  now_ += kDefaultEphemeralGrace;
  EXPECT_EQ(expire(), std::vector<std::string>{"n1"});
}

}  // namespace
}  // namespace knit::coordinator
