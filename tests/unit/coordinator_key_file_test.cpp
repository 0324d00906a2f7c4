// The coordinator key file: made once with mode 0600 in `wg genkey` format, loaded afterwards,
// and refused when others can read it or it is not a key.
#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/stat.h>

#include <filesystem>
#include <fstream>

#include "base/bytes.hpp"
#include "base/random.hpp"
#include "coordinator/key_file.hpp"
#include "wg/crypto.hpp"

namespace knit::coordinator {
namespace {

namespace fs = std::filesystem;

class KeyFile : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string pattern = (fs::temp_directory_path() / "knit-key-XXXXXX").string();
    dir_ = ::mkdtemp(pattern.data());
    file_ = dir_ / kKeyFile;
  }
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }
  fs::path dir_;
  fs::path file_;
  SeededRandom rng_{1};
};

TEST_F(KeyFile, MadeOnceThenLoaded) {
  auto made = load_or_create_key(file_, rng_);
  ASSERT_TRUE(made) << made.error().message;
  EXPECT_TRUE(made->created);
  EXPECT_EQ(made->public_key, wg::crypto::public_key_of(made->private_key));

  struct stat st {};
  ASSERT_EQ(::stat(file_.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  std::ifstream in(file_);
  std::string line;
  std::getline(in, line);
  EXPECT_EQ(line.size(), 44u);  // base64 of 32 bytes, as `wg genkey` prints
  EXPECT_EQ(from_base64(line)->size(), 32u);

  SeededRandom other(2);
  auto loaded = load_or_create_key(file_, other);
  ASSERT_TRUE(loaded);
  EXPECT_FALSE(loaded->created);
  EXPECT_EQ(loaded->public_key, made->public_key);
  EXPECT_TRUE(loaded->private_key.equals(made->private_key.span()));
  // No temporary files are left behind.
  EXPECT_EQ(std::distance(fs::directory_iterator(dir_), fs::directory_iterator()), 1);
}

TEST_F(KeyFile, AcceptsAKeyFromWgGenkey) {
  // A key as `wg genkey` writes it (base64 and a newline), made by hand.
  wg::PrivateKey key = wg::crypto::generate_private_key(rng_);
  {
    std::ofstream out(file_);
    out << to_base64(ByteSpan(key.data(), key.size())) << "\n";
  }
  fs::permissions(file_, fs::perms::owner_read | fs::perms::owner_write);
  auto loaded = load_key(file_);
  ASSERT_TRUE(loaded) << loaded.error().message;
  EXPECT_EQ(loaded->public_key, wg::crypto::public_key_of(key));
}

TEST_F(KeyFile, RefusesAKeyOthersCanRead) {
  ASSERT_TRUE(load_or_create_key(file_, rng_));
  fs::permissions(file_, fs::perms::group_read | fs::perms::others_read, fs::perm_options::add);
  auto refused = load_key(file_);
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().code, Errc::invalid);
  EXPECT_NE(refused.error().message.find("chmod 600"), std::string::npos);
}

TEST_F(KeyFile, RefusesWhatIsNotAKey) {
  {
    std::ofstream out(file_);
    out << "not a key\n";
  }
  fs::permissions(file_, fs::perms::owner_read | fs::perms::owner_write);
  auto refused = load_or_create_key(file_, rng_);
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().code, Errc::invalid);
}

TEST_F(KeyFile, MissingIsNotFound) {
  auto missing = load_key(file_);
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().code, Errc::not_found);
}

}  // namespace
}  // namespace knit::coordinator
