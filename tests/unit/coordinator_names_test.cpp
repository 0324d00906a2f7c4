// Node names: sanitising hostnames to DNS labels (a numbered table) and suffixing names taken by
// other node keys, both directly and through the store.
#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <set>

#include "tests/support/temp_dir.hpp"
#include "base/random.hpp"
#include "coordinator/names.hpp"
#include "coordinator/sqlite_store.hpp"

namespace knit::coordinator {
namespace {

namespace fs = std::filesystem;

TEST(SanitizeLabel, Table) {
  struct Case {
    int number;
    std::string in;
    std::string want;
  };
  const Case cases[] = {
      {1, "laptop", "laptop"},
      {2, "Laptop", "laptop"},
      {3, "My Laptop (work)", "my-laptop-work"},
      {4, "laptop.example.com", "laptop"},  // the first label of an FQDN
      {5, "--weird__name--", "weird-name"},
      {6, "", "node"},
      {7, "!!!", "node"},
      {8, ".hidden", "node"},
      {9, "ÜberHost", "berhost"},
      {10, "db-01", "db-01"},
      {11, "a  b", "a-b"},
      {12, std::string(80, 'x'), std::string(63, 'x')},
      {13, std::string(62, 'x') + "-yz", std::string(62, 'x')},  // no trailing '-' after the cut
      {14, "123", "123"},
  };
  for (const auto& c : cases) {
    std::string got = sanitize_label(c.in);
    EXPECT_EQ(got, c.want) << "case " << c.number;
    EXPECT_LE(got.size(), kMaxLabel);
  }
}

TEST(UniqueName, SuffixesUntilFree) {
  std::set<std::string> taken;
  auto is_taken = [&](const std::string& n) { return taken.count(n) != 0; };
  EXPECT_EQ(unique_name("laptop", is_taken), "laptop");
  taken = {"laptop"};
  EXPECT_EQ(unique_name("laptop", is_taken), "laptop-2");
  taken = {"laptop", "laptop-2", "laptop-3"};
  EXPECT_EQ(unique_name("laptop", is_taken), "laptop-4");
  taken = {"laptop", "laptop-3"};
  EXPECT_EQ(unique_name("laptop", is_taken), "laptop-2");
}

TEST(UniqueName, LongNamesStayWithin63) {
  std::string base(63, 'x');
  std::set<std::string> taken = {base};
  std::string got = unique_name(base, [&](const std::string& n) { return taken.count(n) != 0; });
  EXPECT_EQ(got, std::string(61, 'x') + "-2");
  // A cut that would end in '-' drops it.
  std::string dashed = std::string(60, 'x') + "-ab";
  taken = {dashed};
  got = unique_name(dashed, [&](const std::string& n) { return taken.count(n) != 0; });
  EXPECT_EQ(got, std::string(60, 'x') + "-2");
}

using knit::testing::TempDir;

wg::PublicKey key(std::uint8_t n) {
  wg::PublicKey k{};
  k.fill(n);
  return k;
}

class StoreNames : public ::testing::Test {
 protected:
  void SetUp() override {
    auto s = SqliteStore::open(db_.db());
    ASSERT_TRUE(s);
    store_ = std::move(*s);
    ASSERT_TRUE(store_->ensure_mesh(std::nullopt, rng_));
    Token t;
    t.id = "00000000000000aa";
    t.secret_hash.fill(1);
    t.reusable = true;
    ASSERT_TRUE(store_->add_token(t));
  }
  std::string join(std::uint8_t n, const std::string& hostname) {
    SecretHash h{};
    h.fill(1);
    auto r = store_->join_node(NodeRegistration{key(n), key(n), hostname, ""},
                               PresentedToken{"00000000000000aa", h}, 100);
    EXPECT_TRUE(r && r->token == TokenCheck::ok);
    return r ? r->node.name : "";
  }

  TempDir db_;
  SeededRandom rng_{4};
  std::unique_ptr<SqliteStore> store_;
};

TEST_F(StoreNames, TakenNamesGetSuffixes) {
  EXPECT_EQ(join(1, "laptop"), "laptop");
  EXPECT_EQ(join(2, "laptop"), "laptop-2");
  EXPECT_EQ(join(3, "LAPTOP.lan"), "laptop-3");
  // The same key re-joining keeps its name rather than suffixing against itself.
  EXPECT_EQ(join(2, "laptop"), "laptop-2");
}

TEST_F(StoreNames, ARemovedNameIsFreeAgain) {
  EXPECT_EQ(join(1, "laptop"), "laptop");
  ASSERT_TRUE(store_->remove_node("laptop"));
  EXPECT_EQ(join(2, "laptop"), "laptop");
}

TEST_F(StoreNames, AChangedHostnameRenamesTheNode) {
  EXPECT_EQ(join(1, "laptop"), "laptop");
  EXPECT_EQ(join(2, "desktop"), "desktop");
  EXPECT_EQ(join(1, "desktop"), "desktop-2");
  EXPECT_EQ(join(1, "Desktop"), "desktop-2");  // same label: no churn
  EXPECT_EQ(join(1, "tablet"), "tablet");
  EXPECT_TRUE(*store_->find_node_by_name("tablet"));
  EXPECT_FALSE(*store_->find_node_by_name("desktop-2"));
}

}  // namespace
}  // namespace knit::coordinator
