// The shared key file: made once with mode 0600 in `wg genkey` format, loaded afterwards, refused
// when others can read it or it is not a key, and made only once by two threads racing for it.
#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/stat.h>

#include <filesystem>
#include <fstream>
#include <optional>
#include <string>
#include <thread>

#include "base/bytes.hpp"
#include "base/key_file.hpp"
#include "base/random.hpp"

namespace knit {
namespace {

namespace fs = std::filesystem;

class KeyFileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string pattern = (fs::temp_directory_path() / "knit-base-key-XXXXXX").string();
    dir_ = ::mkdtemp(pattern.data());
    file_ = dir_ / "test.key";
  }
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }
  static void write(const fs::path& path, const std::string& text, mode_t mode) {
    std::ofstream(path) << text;
    ::chmod(path.c_str(), mode);
  }
  static std::string read(const fs::path& path) {
    std::ifstream in(path);
    return std::string(std::istreambuf_iterator<char>(in), {});
  }
  std::size_t entries() const {
    return static_cast<std::size_t>(
        std::distance(fs::directory_iterator(dir_), fs::directory_iterator()));
  }

  fs::path dir_;
  fs::path file_;
  SeededRandom rng_{1};
};

TEST_F(KeyFileTest, MadeOnceInWgGenkeyFormatThenReloaded) {
  auto made = load_or_create_key_file(file_, rng_);
  ASSERT_TRUE(made) << made.error().message;
  EXPECT_TRUE(made->created);
  EXPECT_FALSE(made->key.is_zero());
  // Clamped for X25519, as `wg genkey` does.
  EXPECT_EQ(made->key.data()[0] & 7, 0);
  EXPECT_EQ(made->key.data()[31] & 0xc0, 0x40);

  struct stat st {};
  ASSERT_EQ(::stat(file_.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  const std::string text = read(file_);
  ASSERT_EQ(text.size(), 45u);  // base64 of 32 bytes and a newline
  EXPECT_EQ(text.back(), '\n');
  auto bytes = from_base64(text.substr(0, 44));
  ASSERT_TRUE(bytes);
  ASSERT_EQ(bytes->size(), 32u);
  EXPECT_TRUE(made->key.equals(std::span<const std::uint8_t, 32>(bytes->data(), 32)));

  SeededRandom other(2);
  auto again = load_or_create_key_file(file_, other);
  ASSERT_TRUE(again) << again.error().message;
  EXPECT_FALSE(again->created);
  EXPECT_TRUE(again->key.equals(made->key.span()));
  auto loaded = load_key_file(file_);
  ASSERT_TRUE(loaded) << loaded.error().message;
  EXPECT_FALSE(loaded->created);
  EXPECT_TRUE(loaded->key.equals(made->key.span()));
  EXPECT_EQ(entries(), 1u);  // no temporary file left behind
}

TEST_F(KeyFileTest, LoadsAKeyMadeByWgGenkey) {
  write(file_, "YNqHbfBQKaGvzefSSuufuNKRUuMHF8DI/ZNUJlh0Bno=\r\n", 0600);
  auto loaded = load_key_file(file_);
  ASSERT_TRUE(loaded) << loaded.error().message;
  auto bytes = from_base64("YNqHbfBQKaGvzefSSuufuNKRUuMHF8DI/ZNUJlh0Bno=");
  EXPECT_TRUE(loaded->key.equals(std::span<const std::uint8_t, 32>(bytes->data(), 32)));
}

TEST_F(KeyFileTest, MissingIsNotFoundAndNothingIsMade) {
  auto missing = load_key_file(file_);
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().code, FileErrc::not_found);
  EXPECT_FALSE(fs::exists(file_));
}

TEST_F(KeyFileTest, RefusesAKeyOthersCanReadAndSaysChmod600) {
  ASSERT_TRUE(load_or_create_key_file(file_, rng_));
  ::chmod(file_.c_str(), 0644);
  for (auto refused : {load_key_file(file_), load_or_create_key_file(file_, rng_)}) {
    ASSERT_FALSE(refused);
    EXPECT_EQ(refused.error().code, FileErrc::too_open);
    EXPECT_EQ(refused.error().mode, 0644u);
    const std::string& message = refused.error().message;
    EXPECT_NE(message.find("chmod 600 " + file_.string()), std::string::npos) << message;
    EXPECT_EQ(message.find('\n'), std::string::npos) << message;
  }
}

TEST_F(KeyFileTest, RefusesWhatIsNotAKey) {
  // 1: empty; 2: not base64; 3: too short; 4: an all-zero key; 5: a key with something after it;
  // 6: too large to be a key file at all.
  const std::pair<std::string, FileErrc> cases[] = {
      {"", FileErrc::malformed},
      {"not base64!\n", FileErrc::malformed},
      {"AAAA\n", FileErrc::malformed},
      {std::string(43, 'A') + "=\n", FileErrc::malformed},
      {"YNqHbfBQKaGvzefSSuufuNKRUuMHF8DI/ZNUJlh0Bno= x\n", FileErrc::malformed},
      {std::string(4096, 'A'), FileErrc::too_large},
  };
  for (const auto& [text, code] : cases) {
    write(file_, text, 0600);
    auto refused = load_or_create_key_file(file_, rng_);
    ASSERT_FALSE(refused) << text;
    EXPECT_EQ(refused.error().code, code) << text;
    EXPECT_NE(refused.error().message.find(file_.string()), std::string::npos);
    EXPECT_EQ(read(file_), text);  // left alone for a person to look at
  }
}

TEST_F(KeyFileTest, RefusesWhatIsNotARegularFile) {
  fs::create_directory(file_);
  auto refused = load_or_create_key_file(file_, rng_);
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().code, FileErrc::not_regular);
}

TEST_F(KeyFileTest, TwoThreadsRacingEndWithTheSameKey) {
  for (int round = 0; round < 50; ++round) {
    const fs::path file = dir_ / ("race-" + std::to_string(round) + ".key");
    std::optional<FileResult<StoredKey>> results[2];
    std::thread threads[2];
    for (int i = 0; i < 2; ++i) {
      threads[i] = std::thread([&, i] {
        SeededRandom rng(static_cast<std::uint64_t>(round * 2 + i + 100));
        results[i].emplace(load_or_create_key_file(file, rng));
      });
    }
    for (auto& thread : threads) thread.join();
    ASSERT_TRUE(*results[0]) << results[0]->error().message;
    ASSERT_TRUE(*results[1]) << results[1]->error().message;
    const StoredKey& a = **results[0];
    const StoredKey& b = **results[1];
    EXPECT_TRUE(a.key.equals(b.key.span())) << "round " << round;
    EXPECT_EQ(int{a.created} + int{b.created}, 1) << "round " << round;
    auto on_disk = load_key_file(file);
    ASSERT_TRUE(on_disk);
    EXPECT_TRUE(on_disk->key.equals(a.key.span()));
  }
  EXPECT_EQ(entries(), 50u);  // no temporary files left behind
}

TEST_F(KeyFileTest, PrivateFileIsReplacedOrKept) {
  const fs::path file = dir_ / "mesh.json";
  const std::string first = "first\n";
  const std::string second = "second\n";
  auto bytes = [](const std::string& s) {
    return ByteSpan(reinterpret_cast<const std::uint8_t*>(s.data()), s.size());
  };
  EXPECT_FALSE(write_private_file(file, bytes(first), /*replace=*/true));
  struct stat st {};
  ASSERT_EQ(::stat(file.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  EXPECT_FALSE(write_private_file(file, bytes(second), /*replace=*/false));
  EXPECT_EQ(*read_small_file(file, 64), first);  // kept
  EXPECT_FALSE(write_private_file(file, bytes(second), /*replace=*/true));
  EXPECT_EQ(*read_small_file(file, 64), second);  // replaced
  EXPECT_EQ(entries(), 1u);

  auto small = read_small_file(file, second.size());
  ASSERT_TRUE(small);
  auto large = read_small_file(file, second.size() - 1);
  ASSERT_FALSE(large);
  EXPECT_EQ(large.error().code, FileErrc::too_large);
  auto failed = write_private_file(dir_ / "no-such-dir" / "x", bytes(first), true);
  ASSERT_TRUE(failed);
  EXPECT_EQ(failed->code, FileErrc::io);
}

}  // namespace
}  // namespace knit
