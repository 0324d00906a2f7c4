// Join tokens: the graded check (a numbered table), durations, tags, expiry on a manual clock,
// revocation, and a one-use token refused the second time, also when two store handles race.
#include <gtest/gtest.h>
#include <stdlib.h>

#include <atomic>
#include <filesystem>
#include <thread>

#include "tests/support/temp_dir.hpp"
#include "base/random.hpp"
#include "control/token.hpp"
#include "coordinator/sqlite_store.hpp"
#include "coordinator/token_issue.hpp"
#include "coordinator/tokens.hpp"
#include "wg/crypto.hpp"

namespace knit::coordinator {
namespace {

namespace fs = std::filesystem;

SecretHash hash(std::uint8_t n) {
  SecretHash h{};
  h.fill(n);
  return h;
}

TEST(CheckToken, GradedResults) {
  struct Case {
    int number;
    bool exists;
    std::uint8_t presented;
    bool reusable, relay, revoked;
    std::optional<UnixSeconds> expires_at;
    std::uint64_t uses;
    TokenUse use;
    UnixSeconds now;
    TokenCheck want;
  };
  const Case cases[] = {
      {1, true, 1, false, false, false, {}, 0, TokenUse::node, 100, TokenCheck::ok},
      {2, false, 1, false, false, false, {}, 0, TokenUse::node, 100, TokenCheck::unknown},
      {3, true, 2, false, false, false, {}, 0, TokenUse::node, 100, TokenCheck::unknown},
      // A wrong secret hides every other property of the token.
      {4, true, 2, false, false, true, 50, 3, TokenUse::node, 100, TokenCheck::unknown},
      {5, true, 1, false, false, true, {}, 0, TokenUse::node, 100, TokenCheck::revoked},
      {6, true, 1, true, false, false, 100, 0, TokenUse::node, 99, TokenCheck::ok},
      {7, true, 1, true, false, false, 100, 0, TokenUse::node, 100, TokenCheck::expired},
      {8, true, 1, false, false, false, {}, 1, TokenUse::node, 100, TokenCheck::used},
      {9, true, 1, true, false, false, {}, 1000, TokenUse::node, 100, TokenCheck::ok},
      {10, true, 1, false, false, true, 50, 1, TokenUse::node, 100, TokenCheck::revoked},
      {11, true, 1, false, false, false, 50, 1, TokenUse::node, 100, TokenCheck::expired},
      {12, true, 1, false, true, false, {}, 0, TokenUse::node, 100, TokenCheck::wrong_kind},
      {13, true, 1, false, false, false, {}, 0, TokenUse::relay, 100, TokenCheck::wrong_kind},
      {14, true, 1, false, true, false, {}, 0, TokenUse::relay, 100, TokenCheck::ok},
      {15, true, 1, false, true, false, {}, 1, TokenUse::relay, 100, TokenCheck::used},
  };
  for (const auto& c : cases) {
    Token t;
    t.id = "00000000000000aa";
    t.secret_hash = hash(1);
    t.reusable = c.reusable;
    t.relay = c.relay;
    t.revoked = c.revoked;
    t.expires_at = c.expires_at;
    t.uses = c.uses;
    EXPECT_EQ(check_token(c.exists ? &t : nullptr, hash(c.presented), c.use, c.now), c.want)
        << "case " << c.number;
  }
}

TEST(Durations, ParseOrRefuse) {
  EXPECT_EQ(parse_duration("30m"), 1800);
  EXPECT_EQ(parse_duration("12h"), 43200);
  EXPECT_EQ(parse_duration("7d"), 604800);
  EXPECT_EQ(parse_duration("2w"), 1209600);
  EXPECT_EQ(parse_duration("90s"), 90);
  EXPECT_EQ(parse_duration("1h30m"), 5400);
  for (const char* bad : {"", "30", "m", "0m", "-5m", "5x", "1h 30m", "5M", "99999999999d", "1.5h"})
    EXPECT_FALSE(parse_duration(bad)) << bad;
}

TEST(Tags, Validation) {
  EXPECT_TRUE(valid_tag("server"));
  EXPECT_TRUE(valid_tag("db_2-eu"));
  EXPECT_TRUE(valid_tag(std::string(63, 'a')));
  EXPECT_FALSE(valid_tag(std::string(64, 'a')));
  EXPECT_FALSE(valid_tag(""));
  EXPECT_FALSE(valid_tag("Server"));
  EXPECT_FALSE(valid_tag("tag:server"));
  EXPECT_FALSE(valid_tag("a,b"));
}

TEST(Tokens, OnlyWellFormedOnesCanBeStored) {
  Token t;
  t.id = "0123456789abcdef";
  t.tags = {"server", "db_2-eu"};
  EXPECT_EQ(why_invalid_token(t), "");
  for (const char* id : {"", "0123456789abcde", "0123456789abcdef0", "0123456789ABCDEF",
                         "0123456789abcdeg", "0123456789abcde "}) {
    t.id = id;
    EXPECT_NE(why_invalid_token(t).find("16 lowercase hex digits"), std::string::npos) << id;
  }
  t.id = "0123456789abcdef";
  t.tags = {"server", "Bad!"};
  EXPECT_NE(why_invalid_token(t).find("invalid tag 'Bad!'"), std::string::npos);
}

TEST(Kinds, Labels) {
  Token t;
  EXPECT_EQ(token_kind(t), "one-use");
  t.reusable = true;
  t.ephemeral = true;
  EXPECT_EQ(token_kind(t), "reusable,ephemeral");
  t.reusable = false;
  t.ephemeral = false;
  t.relay = true;
  EXPECT_EQ(token_kind(t), "one-use,relay");
}

using knit::testing::TempDir;

wg::PublicKey key(std::uint8_t n) {
  wg::PublicKey k{};
  k.fill(n);
  return k;
}

TokenOptions options(bool reusable, bool ephemeral = false,
                     std::optional<UnixSeconds> lifetime = std::nullopt,
                     std::vector<std::string> tags = {}) {
  TokenOptions o;
  o.reusable = reusable;
  o.ephemeral = ephemeral;
  o.lifetime = lifetime;
  o.tags = std::move(tags);
  return o;
}

// A manual clock: tests move time by hand.
struct ManualClock {
  UnixSeconds now = 1'700'000'000;
  void advance(UnixSeconds seconds) { now += seconds; }
};

class TokenStore : public ::testing::Test {
 protected:
  void SetUp() override {
    auto s = SqliteStore::open(db_.db());
    ASSERT_TRUE(s);
    store_ = std::move(*s);
    ASSERT_TRUE(store_->ensure_mesh(std::nullopt, rng_));
    auto k = wg::crypto::generate_private_key(rng_);
    coordinator_key_ = wg::crypto::public_key_of(k);
    addresses_ = {*control::HostPort::parse("coord.example.com:7443")};
  }

  // Issues a token and returns the presented form an agent would derive from its text.
  PresentedToken issue(const TokenOptions& options, Token* record = nullptr) {
    auto issued = issue_token(*store_, options, addresses_, coordinator_key_, rng_, clock_.now);
    EXPECT_TRUE(issued) << (issued ? "" : issued.error().message);
    control::JoinToken decoded;
    EXPECT_EQ(control::decode_token(issued->text, decoded), control::TokenError::ok);
    EXPECT_EQ(decoded.coordinator_key, coordinator_key_);
    EXPECT_EQ(decoded.addresses, addresses_);
    if (record) *record = issued->record;
    return PresentedToken{control::token_id_hex(decoded.id), control::secret_hash(decoded.secret)};
  }

  Result<JoinResult> join(std::uint8_t n, const PresentedToken& token) {
    return store_->join_node(NodeRegistration{key(n), key(n), "host", "linux"}, token, clock_.now);
  }

  TempDir db_;
  SeededRandom rng_{21};
  ManualClock clock_;
  wg::PublicKey coordinator_key_{};
  std::vector<control::HostPort> addresses_;
  std::unique_ptr<SqliteStore> store_;
};

TEST_F(TokenStore, IssuedTokensStoreOnlyTheHash) {
  Token record;
  PresentedToken p = issue(options(false, false, {}, {"server"}), &record);
  auto stored = store_->find_token(p.id);
  ASSERT_TRUE(stored && *stored);
  EXPECT_EQ((*stored)->secret_hash, p.secret_hash);
  EXPECT_EQ((*stored)->tags, std::vector<std::string>{"server"});
  EXPECT_EQ((*stored)->created_at, clock_.now);
  EXPECT_FALSE((*stored)->expires_at);
  EXPECT_EQ(record.id.size(), 16u);
}

TEST_F(TokenStore, IssueRefusesBadTags) {
  auto r = issue_token(*store_, options(false, false, {}, {"Bad Tag"}), addresses_,
                       coordinator_key_, rng_, clock_.now);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Errc::invalid);
  EXPECT_TRUE(store_->list_tokens()->empty());
}

TEST_F(TokenStore, OneUseTokenAdmitsOneNode) {
  PresentedToken p = issue({});
  auto first = join(1, p);
  ASSERT_TRUE(first);
  EXPECT_EQ(first->token, TokenCheck::ok);
  auto second = join(2, p);
  ASSERT_TRUE(second);
  EXPECT_EQ(second->token, TokenCheck::used);
  EXPECT_FALSE(*store_->find_node(key(2)));
  // The node that used it may present it again (an agent restarting with --token).
  auto again = join(1, p);
  ASSERT_TRUE(again);
  EXPECT_EQ(again->token, TokenCheck::ok);
  EXPECT_EQ((*store_->find_token(p.id))->uses, 1u);
}

TEST_F(TokenStore, ReusableTokenCountsUses) {
  PresentedToken p = issue(options(true));
  for (std::uint8_t n = 1; n <= 3; ++n) EXPECT_EQ(join(n, p)->token, TokenCheck::ok);
  EXPECT_EQ((*store_->find_token(p.id))->uses, 3u);
}

TEST_F(TokenStore, ExpiryFollowsTheClock) {
  PresentedToken p = issue(options(true, false, 3600));
  clock_.advance(3599);
  EXPECT_EQ(join(1, p)->token, TokenCheck::ok);
  clock_.advance(1);
  EXPECT_EQ(join(2, p)->token, TokenCheck::expired);
  // A member that joined before the expiry is not evicted by it.
  EXPECT_EQ(join(1, p)->token, TokenCheck::ok);
  auto without_token =
      store_->join_node(NodeRegistration{key(1), key(1), "host", ""}, std::nullopt, clock_.now);
  ASSERT_TRUE(without_token);
  EXPECT_EQ(without_token->token, TokenCheck::ok);
}

TEST_F(TokenStore, RevokedTokensAdmitNoOneNew) {
  PresentedToken p = issue(options(true));
  EXPECT_EQ(join(1, p)->token, TokenCheck::ok);
  ASSERT_TRUE(store_->revoke_token(p.id));
  EXPECT_EQ(join(2, p)->token, TokenCheck::revoked);
  EXPECT_TRUE(*store_->find_node(key(1)));  // nodes that joined stay
}

TEST_F(TokenStore, TagsAndEphemeralGoToTheNode) {
  PresentedToken p = issue(options(false, true, {}, {"ci", "build"}));
  auto r = join(1, p);
  ASSERT_TRUE(r);
  EXPECT_TRUE(r->node.ephemeral);
  EXPECT_EQ(r->node.tags, (std::vector<std::string>{"ci", "build"}));
  // A known node joining with another token takes that token's kind and tags.
  PresentedToken q = issue(options(false, false, {}, {"prod"}));
  r = join(1, q);
  ASSERT_TRUE(r);
  EXPECT_FALSE(r->node.ephemeral);
  EXPECT_EQ(r->node.tags, std::vector<std::string>{"prod"});
  EXPECT_EQ(r->node.token_id, q.id);
}

TEST_F(TokenStore, MeshFullDoesNotUseUpTheToken) {
  TempDir small;
  auto s = SqliteStore::open(small.db());
  ASSERT_TRUE(s);
  ASSERT_TRUE((*s)->ensure_mesh(IpPrefix::parse("10.0.0.0/30"), rng_));
  Token reusable;
  reusable.id = "00000000000000bb";
  reusable.secret_hash = hash(1);
  reusable.reusable = true;
  Token t;  // one-use
  t.id = "00000000000000aa";
  t.secret_hash = hash(1);
  ASSERT_TRUE((*s)->add_token(reusable));
  ASSERT_TRUE((*s)->add_token(t));
  ASSERT_TRUE((*s)->join_node({key(1), key(1), "a", ""}, PresentedToken{reusable.id, hash(1)}, 1));
  auto full = (*s)->join_node({key(2), key(2), "b", ""}, PresentedToken{t.id, hash(1)}, 1);
  ASSERT_FALSE(full);
  EXPECT_EQ(full.error().code, Errc::mesh_full);
  EXPECT_EQ((*(*s)->find_token(t.id))->uses, 0u);
}

TEST_F(TokenStore, ConsumeCountsAUseAtomically) {
  PresentedToken p = issue({});
  EXPECT_EQ(*store_->consume_token(p, TokenUse::node, clock_.now), TokenCheck::ok);
  EXPECT_EQ(*store_->consume_token(p, TokenUse::node, clock_.now), TokenCheck::used);
  PresentedToken wrong{p.id, hash(0)};
  EXPECT_EQ(*store_->consume_token(wrong, TokenUse::node, clock_.now), TokenCheck::unknown);
}

// Two coordinators (or a server and a stray second server) on one database race to use the
// same one-use token: exactly one wins, over many rounds.
TEST_F(TokenStore, OneUseTokenRaceAcrossTwoHandles) {
  auto other = SqliteStore::open(db_.db());
  ASSERT_TRUE(other);
  SqliteStore* handles[2] = {store_.get(), other->get()};
  for (int round = 0; round < 20; ++round) {
    PresentedToken p = issue({});
    std::atomic<int> ok{0}, used{0}, failed{0};
    std::atomic<bool> go{false};
    std::vector<std::thread> threads;
    for (int i = 0; i < 2; ++i) {
      threads.emplace_back([&, i] {
        while (!go.load()) std::this_thread::yield();
        auto node = static_cast<std::uint8_t>(100 + 2 * round + i);
        auto r = handles[i]->join_node(NodeRegistration{key(node), key(node), "racer", ""}, p,
                                       clock_.now);
        if (!r) ++failed;
        else if (r->token == TokenCheck::ok) ++ok;
        else if (r->token == TokenCheck::used) ++used;
      });
    }
    go = true;
    for (auto& t : threads) t.join();
    EXPECT_EQ(ok.load(), 1) << "round " << round;
    EXPECT_EQ(used.load(), 1) << "round " << round;
    EXPECT_EQ(failed.load(), 0) << "round " << round;
  }
}

TEST_F(TokenStore, TokenAddressesComeFromAdvertiseOrTheSavedListenAddress) {
  auto none = token_addresses(*store_, {});
  ASSERT_FALSE(none);
  EXPECT_NE(none.error().message.find("--advertise"), std::string::npos);

  ASSERT_TRUE(store_->set_listen_address("0.0.0.0:7443"));
  auto wildcard = token_addresses(*store_, {});
  ASSERT_FALSE(wildcard);
  EXPECT_NE(wildcard.error().message.find("cannot dial"), std::string::npos);

  ASSERT_TRUE(store_->set_listen_address("192.0.2.7:7443"));
  auto saved = token_addresses(*store_, {});
  ASSERT_TRUE(saved);
  EXPECT_EQ(saved->at(0).to_string(), "192.0.2.7:7443");

  auto advertised = token_addresses(*store_, {"coord.example.com:443", "[2001:db8::1]:443"});
  ASSERT_TRUE(advertised);
  EXPECT_EQ(advertised->size(), 2u);
  EXPECT_FALSE(token_addresses(*store_, {"no port"}));
}

}  // namespace
}  // namespace knit::coordinator
