// Every file knitd writes into its state directory that holds a secret or says who it is
// (node.key, disco.key, mesh.json, filter.json) is 0600 after every write, including atomic
// replaces over a file that was too open, whatever the umask; the directory is 0700; no
// temporary file is left behind.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <fstream>
#include <string>

#include "agent/forward_store.hpp"
#include "agent/node_identity.hpp"
#include "base/random.hpp"
#include "tests/support/file_modes.hpp"
#include "tests/support/temp_dir.hpp"

namespace knit::agent {
namespace {

using knit::testing::mode_of;
using knit::testing::names_in;
using knit::testing::ScopedUmask;

MeshRecord record(const std::string& name) {
  MeshRecord r;
  r.coordinator_addresses = {*control::HostPort::parse("coord.example.com:7443")};
  r.coordinator_key.fill(7);
  r.hostname = name;
  r.name = name;
  r.ipv4 = IpAddress::parse("100.64.0.5").value();
  r.ipv6 = IpAddress::parse("fd7a:115c:a1e0::5").value();
  r.ipv4_prefix = IpPrefix::parse("100.64.0.0/10").value();
  r.ipv6_prefix = IpPrefix::parse("fd7a:115c:a1e0::/48").value();
  return r;
}

TEST(AgentStateFileModes, KeysMeshAndFilterFilesAre0600AfterEveryWrite) {
  knit::testing::TempDir tmp;
  ScopedUmask open_umask(0);
  const auto dir = tmp.path() / "state";
  StateDir state(dir);
  state.ensure();
  EXPECT_EQ(mode_of(dir), 0700u);
  SeededRandom rng(9);
  (void)state.load_or_create_identity(rng);
  EXPECT_EQ(mode_of(dir / "node.key"), 0600u);
  EXPECT_EQ(mode_of(dir / "disco.key"), 0600u);
  (void)state.load_or_create_identity(rng);  // loaded, not rewritten
  EXPECT_EQ(mode_of(dir / "node.key"), 0600u);

  state.save_mesh(record("a"));
  EXPECT_EQ(mode_of(dir / "mesh.json"), 0600u) << "first save";
  state.save_mesh(record("b"));
  EXPECT_EQ(mode_of(dir / "mesh.json"), 0600u) << "atomic replace";

  ForwardStore forwards(dir);
  forwards.save(FilterSettings{true, {}});
  EXPECT_EQ(mode_of(forwards.file()), 0600u) << "first save";
  forwards.save(FilterSettings{false, {}});
  EXPECT_EQ(mode_of(forwards.file()), 0600u) << "atomic replace";
  EXPECT_EQ(names_in(dir),
            (std::set<std::string>{"disco.key", "filter.json", "mesh.json", "node.key"}));
}

TEST(AgentStateFileModes, ASaveOverAFileOthersCouldReadMakesIt0600) {
  knit::testing::TempDir tmp;
  ScopedUmask open_umask(0);
  const auto dir = tmp.path() / "state";
  StateDir state(dir);
  state.ensure();
  state.save_mesh(record("a"));
  ::chmod((dir / "mesh.json").c_str(), 0644);
  state.save_mesh(record("b"));
  EXPECT_EQ(mode_of(dir / "mesh.json"), 0600u);
  ForwardStore forwards(dir);
  forwards.save(FilterSettings{});
  ::chmod(forwards.file().c_str(), 0666);
  forwards.save(FilterSettings{true, {}});
  EXPECT_EQ(mode_of(forwards.file()), 0600u);
}

TEST(AgentStateFileModes, AnOpenStateDirectoryIsClosedBeforeKeysGoIn) {
  knit::testing::TempDir tmp;
  const auto dir = tmp.path() / "state";
  std::filesystem::create_directories(dir);
  ::chmod(dir.c_str(), 0755);
  StateDir state(dir);
  state.ensure();
  SeededRandom rng(3);
  (void)state.load_or_create_identity(rng);
  EXPECT_EQ(mode_of(dir), 0700u);
}

}  // namespace
}  // namespace knit::agent
