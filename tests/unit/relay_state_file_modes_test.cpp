// knit-relay's state directory (relay/coordinator_link_state.hpp): relay.key, coordinator.json
// and membership.json are 0600 after every write, including atomic replaces over a file that
// was too open, whatever the umask; the directory is 0700; no temporary file is left behind.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <string>

#include "base/random.hpp"
#include "relay/coordinator_link_state.hpp"
#include "tests/support/file_modes.hpp"
#include "tests/support/temp_dir.hpp"

namespace knit::relay {
namespace {

using knit::testing::mode_of;
using knit::testing::names_in;
using knit::testing::ScopedUmask;

TEST(RelayStateFileModes, EveryFileIs0600AfterEveryWrite) {
  knit::testing::TempDir tmp;
  ScopedUmask open_umask(0);
  const auto dir = tmp.path() / "relay";
  LinkState state(dir);
  state.ensure();
  EXPECT_EQ(mode_of(dir), 0700u);
  SeededRandom rng(5);
  (void)state.load_or_create_key(rng);
  EXPECT_EQ(mode_of(dir / kRelayKeyFile), 0600u);

  CoordinatorRecord record;
  record.addresses = {*control::HostPort::parse("coord.example.net:7443")};
  record.coordinator_key.fill(3);
  state.save_coordinator(record);
  EXPECT_EQ(mode_of(dir / kCoordinatorFile), 0600u) << "first save";
  ::chmod((dir / kCoordinatorFile).c_str(), 0644);
  state.save_coordinator(record);
  EXPECT_EQ(mode_of(dir / kCoordinatorFile), 0600u) << "replace over a 0644 file";

  MembershipCache cache;
  wg::PublicKey member{};
  member.fill(9);
  cache.members = {member};
  state.save_membership(cache);
  EXPECT_EQ(mode_of(dir / kMembershipFile), 0600u) << "first save";
  state.save_membership(cache);
  EXPECT_EQ(mode_of(dir / kMembershipFile), 0600u) << "atomic replace";
  EXPECT_EQ(names_in(dir), (std::set<std::string>{kRelayKeyFile, kCoordinatorFile, kMembershipFile}));
}

}  // namespace
}  // namespace knit::relay
