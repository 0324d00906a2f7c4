// PeerView, the server's shared peer map: maps and deltas it splices from per-peer JSON must be
// byte for byte what control::encode writes for the same structs, each node's view leaves out
// its own entry, and changes nobody can see publish nothing.
#include <gtest/gtest.h>

#include "control/messages.hpp"
#include "coordinator/server.hpp"

namespace knit::coordinator {
namespace {

control::PeerInfo peer(std::uint8_t n, bool online = true) {
  control::PeerInfo p;
  p.name = "n" + std::to_string(n);
  p.node_key.fill(n);
  p.disco_key.fill(static_cast<std::uint8_t>(n + 100));
  p.ipv4 = IpAddress::v4(0x64400000u + n);
  p.ipv6 = *IpAddress::parse("fd00::" + std::to_string(n));
  p.online = online;
  p.last_seen = 1000 + n;
  p.endpoints = {*Endpoint::parse("192.0.2." + std::to_string(n) + ":41641"),
                 *Endpoint::parse("[2001:db8::" + std::to_string(n) + "]:41641")};
  p.home_relay = n % 2 ? "relay-a" : "";
  p.tags = {"t", "server"};
  p.routes = {*IpPrefix::parse("10." + std::to_string(n) + ".0.0/16")};
  return p;
}

TEST(PeerView, SplicedMapsAndDeltasEqualTheEncoder) {
  PeerView view;
  view.reset({peer(1), peer(2), peer(3)});
  EXPECT_EQ(view.version(), 1u);
  EXPECT_EQ(view.map_text_for(peer(2).node_key),
            control::encode(control::PeerMap{1, {peer(1), peer(3)}}));
  EXPECT_EQ(view.map_text_for(peer(9).node_key),
            control::encode(control::PeerMap{1, {peer(1), peer(2), peer(3)}}));

  view.set(peer(4));
  view.set(peer(2, false));
  view.remove(peer(3).node_key);
  view.set(peer(1));  // unchanged: not in the delta
  auto published = view.publish();
  ASSERT_TRUE(published);
  EXPECT_EQ(published->version, 2u);
  EXPECT_EQ(published->text, control::encode(control::PeerDelta{
                                 2, {peer(4)}, {peer(2, false)}, {peer(3).node_key}}));
  EXPECT_EQ((std::vector<control::NodeKey>{peer(2).node_key, peer(3).node_key, peer(4).node_key}),
            published->keys);
  EXPECT_EQ(view.delta_text_for(peer(4).node_key),
            control::encode(control::PeerDelta{2, {}, {peer(2, false)}, {peer(3).node_key}}));
  EXPECT_EQ(view.delta_text_for(peer(2).node_key),
            control::encode(control::PeerDelta{2, {peer(4)}, {}, {peer(3).node_key}}));
  EXPECT_EQ(view.map_text_for(peer(1).node_key),
            control::encode(control::PeerMap{2, {peer(2, false), peer(4)}}));
  EXPECT_EQ(view.map_text_for(peer(4).node_key),
            control::encode(control::PeerMap{2, {peer(1), peer(2, false)}}));

  view.set(peer(4));  // as it is
  EXPECT_FALSE(view.publish());
  EXPECT_EQ(view.version(), 2u);
  view.set(peer(5));
  view.remove(peer(5).node_key);  // came and went between two publishes
  EXPECT_FALSE(view.publish());
}

TEST(PeerView, FindAndKeysSeePendingChanges) {
  PeerView view;
  view.reset({peer(1), peer(2)});
  view.set(peer(3));
  view.remove(peer(1).node_key);
  EXPECT_EQ(view.find(peer(1).node_key), nullptr);
  ASSERT_NE(view.find(peer(3).node_key), nullptr);
  EXPECT_EQ(view.keys(), (std::vector<control::NodeKey>{peer(2).node_key, peer(3).node_key}));
  // Published state is what a joining agent gets until the next publish.
  EXPECT_EQ(view.map_text_for(peer(9).node_key),
            control::encode(control::PeerMap{1, {peer(1), peer(2)}}));
}

}  // namespace
}  // namespace knit::coordinator
