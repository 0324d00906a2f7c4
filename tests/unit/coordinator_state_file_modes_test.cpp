// The coordinator's secrets: coordinator.key is 0600 whatever the umask, its state directory
// is made 0700, and the database (token hashes, the mesh) lives inside it.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include "base/random.hpp"
#include "coordinator/key_file.hpp"
#include "coordinator/state_dir.hpp"
#include "tests/support/file_modes.hpp"
#include "tests/support/temp_dir.hpp"

namespace knit::coordinator {
namespace {

using knit::testing::mode_of;
using knit::testing::names_in;
using knit::testing::ScopedUmask;

TEST(CoordinatorStateFileModes, KeyIs0600AndTheDirectory0700UnderAPermissiveUmask) {
  knit::testing::TempDir tmp;
  ScopedUmask open_umask(0);
  const auto dir = tmp.path() / "coordinator";
  ASSERT_TRUE(prepare_state_dir(dir));
  EXPECT_EQ(mode_of(dir), 0700u);
  SeededRandom rng(6);
  auto key = load_or_create_key(dir / kKeyFile, rng);
  ASSERT_TRUE(key);
  EXPECT_EQ(mode_of(dir / kKeyFile), 0600u);
  auto again = load_or_create_key(dir / kKeyFile, rng);
  ASSERT_TRUE(again);
  EXPECT_EQ(mode_of(dir / kKeyFile), 0600u);
  EXPECT_EQ(names_in(dir), std::set<std::string>{std::string(kKeyFile)});
}

}  // namespace
}  // namespace knit::coordinator
