// The state directory: key files made 0600 and reloaded unchanged, unsafe or damaged files
// refused with what to do, mesh.json saved, reloaded and forgotten.
#include <gtest/gtest.h>

#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "agent/node_identity.hpp"
#include "base/bytes.hpp"
#include "wg/crypto.hpp"

namespace knit::agent {
namespace {

namespace fs = std::filesystem;

class StateDirTest : public ::testing::Test {
 protected:
  StateDirTest() {
    char pattern[] = "/tmp/knit-state-XXXXXX";
    root_ = ::mkdtemp(pattern);
    dir_ = root_ / "state" / "knit";
  }
  ~StateDirTest() override { fs::remove_all(root_); }

  static mode_t mode_of(const fs::path& path) {
    struct stat st {};
    ::stat(path.c_str(), &st);
    return st.st_mode & 0777;
  }
  static std::string read(const fs::path& path) {
    std::ifstream in(path);
    return std::string(std::istreambuf_iterator<char>(in), {});
  }
  static void write(const fs::path& path, const std::string& text, mode_t mode) {
    std::ofstream(path) << text;
    ::chmod(path.c_str(), mode);
  }

  fs::path root_;
  fs::path dir_;
  SystemRandom rng_;
};

MeshRecord sample_record() {
  MeshRecord record;
  record.coordinator_addresses = {*control::HostPort::parse("coord.example.com:7443"),
                                  *control::HostPort::parse("[2001:db8::9]:7443")};
  record.coordinator_key.fill(7);
  record.hostname = "laptop";
  record.name = "laptop";
  record.ipv4 = IpAddress::parse("100.64.0.5").value();
  record.ipv6 = IpAddress::parse("fd7a:115c:a1e0::5").value();
  record.ipv4_prefix = IpPrefix::parse("100.64.0.0/10").value();
  record.ipv6_prefix = IpPrefix::parse("fd7a:115c:a1e0::/48").value();
  return record;
}

TEST_F(StateDirTest, MakesKeysPrivatelyAndReloadsThem) {
  StateDir state(dir_);
  NodeIdentity first = state.load_or_create_identity(rng_);
  EXPECT_EQ(mode_of(dir_), 0700u);
  EXPECT_EQ(mode_of(dir_ / kNodeKeyFile), 0600u);
  EXPECT_EQ(mode_of(dir_ / kDiscoKeyFile), 0600u);
  EXPECT_EQ(first.node.public_key, wg::crypto::public_key_of(first.node.private_key));
  EXPECT_NE(first.node.public_key, first.disco.public_key);
  // `wg genkey` format: base64 of 32 bytes and a newline.
  const std::string text = read(dir_ / kNodeKeyFile);
  ASSERT_EQ(text.size(), 45u);
  EXPECT_EQ(text.back(), '\n');
  auto bytes = from_base64(text.substr(0, 44));
  ASSERT_TRUE(bytes);
  EXPECT_TRUE(first.node.private_key.equals(std::span<const std::uint8_t, 32>(bytes->data(), 32)));

  NodeIdentity again = state.load_or_create_identity(rng_);
  EXPECT_EQ(again.node.public_key, first.node.public_key);
  EXPECT_EQ(again.disco.public_key, first.disco.public_key);
}

TEST_F(StateDirTest, LoadsAKeyMadeByWgGenkey) {
  fs::create_directories(dir_);
  // A key as `wg genkey` writes it.
  write(dir_ / kNodeKeyFile, "YNqHbfBQKaGvzefSSuufuNKRUuMHF8DI/ZNUJlh0Bno=\n", 0600);
  KeyPair pair = load_or_create_key(dir_ / kNodeKeyFile, rng_);
  EXPECT_EQ(to_base64(pair.public_key), to_base64(wg::crypto::public_key_of(pair.private_key)));
  EXPECT_FALSE(pair.private_key.is_zero());
}

TEST_F(StateDirTest, RefusesAKeyOthersCanRead) {
  StateDir state(dir_);
  state.load_or_create_identity(rng_);
  ::chmod((dir_ / kNodeKeyFile).c_str(), 0644);
  try {
    state.load_or_create_identity(rng_);
    FAIL() << "a world-readable key was accepted";
  } catch (const StateError& e) {
    EXPECT_NE(std::string(e.what()).find("chmod 600"), std::string::npos) << e.what();
  }
}

TEST_F(StateDirTest, RefusesADamagedKey) {
  fs::create_directories(dir_);
  for (const std::string& text : {std::string(), std::string("not base64!\n"), std::string("AAAA\n"), std::string(44, 'A') + "\n"}) {
    write(dir_ / kNodeKeyFile, text, 0600);
    EXPECT_THROW(load_or_create_key(dir_ / kNodeKeyFile, rng_), StateError) << text;
  }
}

TEST_F(StateDirTest, MeshRecordIsSavedReloadedAndForgotten) {
  StateDir state(dir_);
  EXPECT_EQ(state.load_mesh(), std::nullopt);
  state.save_mesh(sample_record());
  EXPECT_EQ(mode_of(dir_ / kMeshFile), 0600u);
  EXPECT_EQ(state.load_mesh(), sample_record());
  MeshRecord changed = sample_record();
  changed.name = "laptop-2";
  state.save_mesh(changed);
  EXPECT_EQ(state.load_mesh(), changed);
  state.forget_mesh();
  EXPECT_EQ(state.load_mesh(), std::nullopt);
  EXPECT_NO_THROW(state.forget_mesh());
  // The node key outlives the membership.
  state.load_or_create_identity(rng_);
  state.forget_mesh();
  EXPECT_TRUE(fs::exists(dir_ / kNodeKeyFile));
}

TEST_F(StateDirTest, DamagedMeshFileSaysWhatToDo) {
  fs::create_directories(dir_);
  StateDir state(dir_);
  for (const char* text : {"{", "[]", "{}", R"({"coordinator": {"addresses": [], "public_key": "x"}})"}) {
    write(dir_ / kMeshFile, text, 0600);
    try {
      state.load_mesh();
      FAIL() << "accepted: " << text;
    } catch (const StateError& e) {
      EXPECT_NE(std::string(e.what()).find("knit up --token"), std::string::npos) << e.what();
    }
  }
}

TEST(MeshRecordText, RoundTripsAndRefusesWrongFamilies) {
  std::string why;
  EXPECT_EQ(parse_mesh_record(encode_mesh_record(sample_record()), why), sample_record());
  std::string text = encode_mesh_record(sample_record());
  const auto at = text.find("100.64.0.5");
  text.replace(at, 10, "fd00::5");
  EXPECT_EQ(parse_mesh_record(text, why), std::nullopt);
  EXPECT_FALSE(why.empty());
}

// `knit down` marks the record; a file from before the mark (no "down") is a connected member.
TEST(MeshRecordText, TheDownMark) {
  std::string why;
  MeshRecord down = sample_record();
  down.down = true;
  const std::string text = encode_mesh_record(down);
  EXPECT_NE(text.find("\"down\": true"), std::string::npos) << text;
  EXPECT_EQ(parse_mesh_record(text, why), down);
  EXPECT_EQ(encode_mesh_record(sample_record()).find("down"), std::string::npos);
  std::string wrong = text;
  wrong.replace(wrong.find("true"), 4, "\"yes\"");
  EXPECT_EQ(parse_mesh_record(wrong, why), std::nullopt);
}

}  // namespace
}  // namespace knit::agent
