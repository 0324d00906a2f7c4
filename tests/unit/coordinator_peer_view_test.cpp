// PeerView, the server's shared peer map: the deltas it splices from per-peer entries parse to
// exactly the changes made, each node's view leaves out its own entry, a snapshot's pages
// together are the published map (without the reader), changes nobody can see publish
// nothing, and a change too large for one delta goes out as several versions.
#include <gtest/gtest.h>

#include <algorithm>

#include "base/bytes.hpp"
#include "control/messages.hpp"
#include "control/peer_map.hpp"
#include "coordinator/peer_view.hpp"

namespace knit::coordinator {
namespace {

const control::V6Base kBase = {0xfd, 0x12, 0x34, 0x56, 0x78, 0x9a};

control::PeerInfo peer(std::uint32_t n, bool online = true) {
  control::PeerInfo p;
  p.name = "n" + std::to_string(n);
  p.node_key.fill(0x22);
  store_be32(p.node_key.data(), n + 1);
  p.disco_key.fill(0x33);
  store_be32(p.disco_key.data(), n + 7);
  p.ipv4 = IpAddress::v4(0x64400000u + n);
  std::uint8_t v6[16] = {};
  std::copy(kBase.begin(), kBase.end(), v6);
  std::copy(p.ipv4.bytes(), p.ipv4.bytes() + 4, v6 + 12);
  p.ipv6 = n % 7 == 0 ? IpAddress::parse("2001:db8::7").value() : IpAddress::v6(v6);
  p.online = online;
  p.last_seen = 1000 + n;
  p.endpoints = {Endpoint::parse("192.0.2." + std::to_string(n % 250) + ":41641").value()};
  p.home_relay = n % 2 ? "relay-a" : "";
  p.tags = {"t", "server"};
  p.routes = {IpPrefix::parse("10." + std::to_string(n % 250) + ".0.0/16").value()};
  return p;
}

template <typename T>
T parsed(const std::string& bytes) {
  control::ParseResult result = control::parse_message(bytes);
  EXPECT_TRUE(std::holds_alternative<T>(result))
      << (std::holds_alternative<control::ParseError>(result)
              ? std::get<control::ParseError>(result).describe()
              : std::string("another message"));
  return std::holds_alternative<T>(result) ? std::get<T>(result) : T{};
}

// The map a reader assembles from every page of the snapshot.
control::PeerMap assembled(const MapSnapshot& snapshot, const control::NodeKey& own) {
  control::PeerMap map{snapshot.version(), {}};
  for (std::size_t i = 0; i < snapshot.page_count(); ++i) {
    const auto page = parsed<control::PeerMapPage>(snapshot.page_for(i, own));
    EXPECT_EQ(page.index, i);
    EXPECT_EQ(page.count, snapshot.page_count());
    EXPECT_EQ(page.version, snapshot.version());
    map.peers.insert(map.peers.end(), page.peers.begin(), page.peers.end());
  }
  control::sort_by_node_key(map.peers);
  return map;
}

control::PeerMap map_of(std::uint64_t version, std::vector<control::PeerInfo> peers) {
  control::sort_by_node_key(peers);
  return control::PeerMap{version, std::move(peers)};
}

TEST(PeerView, DeltasAndPagesAreTheChangesAndTheMap) {
  PeerView view(kBase);
  view.reset({peer(1), peer(2), peer(3)});
  EXPECT_EQ(view.version(), 1u);
  EXPECT_EQ(assembled(*view.snapshot(), peer(2).node_key), map_of(1, {peer(1), peer(3)}));
  EXPECT_EQ(assembled(*view.snapshot(), peer(9).node_key), map_of(1, {peer(1), peer(2), peer(3)}));

  view.set(peer(4));
  view.set(peer(2, false));
  view.remove(peer(3).node_key);
  view.set(peer(1));  // unchanged: not in the delta
  auto published = view.publish();
  ASSERT_TRUE(published);
  EXPECT_EQ(published->version, 2u);
  EXPECT_EQ(parsed<control::PeerDelta>(published->text),
            (control::PeerDelta{2, {peer(4)}, {peer(2, false)}, {peer(3).node_key}}));
  EXPECT_EQ((std::vector<control::NodeKey>{peer(2).node_key, peer(3).node_key, peer(4).node_key}),
            published->keys);
  EXPECT_EQ(parsed<control::PeerDelta>(view.delta_text_for(peer(4).node_key)),
            (control::PeerDelta{2, {}, {peer(2, false)}, {peer(3).node_key}}));
  EXPECT_EQ(parsed<control::PeerDelta>(view.delta_text_for(peer(2).node_key)),
            (control::PeerDelta{2, {peer(4)}, {}, {peer(3).node_key}}));
  EXPECT_EQ(parsed<control::PeerDelta>(view.delta_text_for(peer(3).node_key)),
            (control::PeerDelta{2, {peer(4)}, {peer(2, false)}, {}}));
  EXPECT_EQ(assembled(*view.snapshot(), peer(1).node_key), map_of(2, {peer(2, false), peer(4)}));
  EXPECT_EQ(assembled(*view.snapshot(), peer(4).node_key), map_of(2, {peer(1), peer(2, false)}));

  view.set(peer(4));  // as it is
  EXPECT_FALSE(view.publish());
  EXPECT_EQ(view.version(), 2u);
  view.set(peer(5));
  view.remove(peer(5).node_key);  // came and went between two publishes
  EXPECT_FALSE(view.publish());
}

TEST(PeerView, FindAndKeysSeePendingChanges) {
  PeerView view(kBase);
  view.reset({peer(1), peer(2)});
  view.set(peer(3));
  view.remove(peer(1).node_key);
  EXPECT_EQ(view.find(peer(1).node_key), nullptr);
  ASSERT_NE(view.find(peer(3).node_key), nullptr);
  EXPECT_EQ(view.keys(), (std::vector<control::NodeKey>{peer(2).node_key, peer(3).node_key}));
  // The published state is what a joining agent gets until the next publish, and the snapshot
  // is shared until then.
  auto snapshot = view.snapshot();
  EXPECT_EQ(assembled(*snapshot, peer(9).node_key), map_of(1, {peer(1), peer(2)}));
  EXPECT_EQ(view.snapshot(), snapshot);
  ASSERT_TRUE(view.publish());
  EXPECT_NE(view.snapshot(), snapshot);
  EXPECT_EQ(snapshot->version(), 1u);  // a session still streaming it keeps its version
}

TEST(PeerView, LargeMapsArePagedAndEveryPageSkipsOnlyItsReader) {
  PeerView view(kBase);
  std::vector<control::PeerInfo> all;
  for (std::uint32_t n = 0; n < 5000; ++n) all.push_back(peer(n));
  view.reset(all);
  auto snapshot = view.snapshot();
  EXPECT_GT(snapshot->page_count(), 3u);
  const control::NodeKey reader = peer(2500).node_key;
  std::vector<control::PeerInfo> others = all;
  others.erase(others.begin() + 2500);
  EXPECT_EQ(assembled(*snapshot, reader), map_of(1, others));
  for (std::size_t i = 0; i < snapshot->page_count(); ++i)
    EXPECT_LE(snapshot->page_for(i, reader).size(), control::kPeerPageTargetBytes + 1024);
}

TEST(PeerView, AChangeTooLargeForOneDeltaGoesOutAsSeveralVersions) {
  PeerView view(kBase);
  view.reset({});
  for (std::uint32_t n = 0; n < 10000; ++n) view.set(peer(n));
  control::PeerMap client{1, {}};
  control::PeerTable table;
  ASSERT_TRUE(table.reset(client));
  int deltas = 0;
  while (view.has_pending()) {
    auto published = view.publish();
    ASSERT_TRUE(published);
    ++deltas;
    EXPECT_LE(published->text.size(), control::kMaxPeerMessageBytes);
    EXPECT_LE(published->keys.size(), control::kMaxPeersPerMessage);
    ASSERT_TRUE(table.apply(parsed<control::PeerDelta>(published->text)));
  }
  EXPECT_GT(deltas, 1);
  EXPECT_EQ(table.size(), 10000u);
  EXPECT_EQ(table.map().version, view.version());
}

}  // namespace
}  // namespace knit::coordinator
