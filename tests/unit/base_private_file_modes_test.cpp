// Every way base/key_file.hpp writes a file ends with mode 0600 and no temporary file left,
// whatever the umask: a first write, an atomic replace over a file that was too open, a kept
// file, a key made on first use.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <fstream>
#include <string>

#include "base/key_file.hpp"
#include "base/random.hpp"
#include "tests/support/file_modes.hpp"
#include "tests/support/temp_dir.hpp"

namespace knit {
namespace {

using testing::mode_of;
using testing::names_in;
using testing::ScopedUmask;

ByteSpan bytes_of(const std::string& s) {
  return ByteSpan(reinterpret_cast<const std::uint8_t*>(s.data()), s.size());
}

TEST(PrivateFileModes, EveryWriteIs0600UnderAPermissiveUmask) {
  testing::TempDir dir;
  ScopedUmask open_umask(0);
  const auto file = dir.path() / "mesh.json";
  ASSERT_FALSE(write_private_file(file, bytes_of("one\n"), /*replace=*/true));
  EXPECT_EQ(mode_of(file), 0600u) << "first write";
  ASSERT_FALSE(write_private_file(file, bytes_of("two\n"), /*replace=*/true));
  EXPECT_EQ(mode_of(file), 0600u) << "atomic replace";
  ASSERT_FALSE(write_private_file(file, bytes_of("three\n"), /*replace=*/false));
  EXPECT_EQ(mode_of(file), 0600u) << "kept";
  EXPECT_EQ(names_in(dir.path()), std::set<std::string>{"mesh.json"});
}

TEST(PrivateFileModes, ReplacingAFileOthersCouldReadMakesIt0600) {
  testing::TempDir dir;
  ScopedUmask open_umask(0);
  const auto file = dir.path() / "filter.json";
  std::ofstream(file) << "old\n";
  ::chmod(file.c_str(), 0644);
  ASSERT_EQ(mode_of(file), 0644u);
  ASSERT_FALSE(write_private_file(file, bytes_of("new\n"), /*replace=*/true));
  EXPECT_EQ(mode_of(file), 0600u);
  EXPECT_EQ(names_in(dir.path()), std::set<std::string>{"filter.json"});
}

TEST(PrivateFileModes, AStricterUmaskIsNeverWidened) {
  testing::TempDir dir;
  ScopedUmask strict(0277);
  const auto file = dir.path() / "x";
  ASSERT_FALSE(write_private_file(file, bytes_of("x\n"), /*replace=*/true));
  EXPECT_EQ(mode_of(file), 0400u);
}

TEST(PrivateFileModes, AKeyMadeOnFirstUseIs0600UnderAPermissiveUmask) {
  testing::TempDir dir;
  ScopedUmask open_umask(0);
  SeededRandom rng(4);
  const auto file = dir.path() / "node.key";
  auto made = load_or_create_key_file(file, rng);
  ASSERT_TRUE(made) << made.error().message;
  EXPECT_EQ(mode_of(file), 0600u);
  auto again = load_or_create_key_file(file, rng);
  ASSERT_TRUE(again) << again.error().message;
  EXPECT_EQ(mode_of(file), 0600u);
  EXPECT_EQ(names_in(dir.path()), std::set<std::string>{"node.key"});
}

}  // namespace
}  // namespace knit
