// dns::MeshTable followed delta by delta (update_nodes) against the table built from the whole
// list each time (set_nodes), over random adds, removals, renames and readdressings: every name
// and address ever used must resolve the same in both.
#include <gtest/gtest.h>

#include <map>
#include <set>
#include <string>
#include <vector>

#include "base/random.hpp"
#include "dns/mesh_table.hpp"

namespace knit::dns {
namespace {

IpAddress v4(std::uint32_t n) { return IpAddress::v4(0x64400000u + n); }  // 100.64.x.y
IpAddress v6(std::uint32_t n) {
  std::array<std::uint8_t, 16> b{0xfd, 0x7a, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0};
  b[14] = static_cast<std::uint8_t>(n >> 8);
  b[15] = static_cast<std::uint8_t>(n);
  return IpAddress::v6(b.data());
}

MeshTable table_of(const std::map<std::string, MeshNode>& nodes) {
  MeshTable t;
  t.set_domain("mesh.test");
  std::vector<MeshNode> list;
  for (const auto& [name, node] : nodes) list.push_back(node);
  t.set_nodes(list);
  return t;
}

// What a client would see: A/AAAA for every name, PTR for every address.
std::string view(const MeshTable& t, const std::set<std::string>& names, const std::set<IpAddress>& addresses) {
  std::string out;
  for (const std::string& n : names) {
    const auto r = t.lookup(n + ".mesh.test", type::ANY);
    out += n + ":" + std::to_string(static_cast<int>(r.kind)) + ":" + std::to_string(r.answers.size());
    for (const Record& rec : r.answers) out += "," + rec.name;
    out += "\n";
  }
  for (const IpAddress& a : addresses) {
    const auto r = t.lookup(reverse_name(a), type::PTR);
    out += a.to_string() + ":" + std::to_string(static_cast<int>(r.kind));
    for (const Record& rec : r.answers) out += "," + rec.name;
    out += "\n";
  }
  return out;
}

}  // namespace

TEST(DnsMeshTable, UpdatesFollowTheMapLikeARebuild) {
  SeededRandom rng(42);
  std::map<std::string, MeshNode> nodes;  // the map, by name (names are unique in a mesh)
  std::set<std::string> names;
  std::set<IpAddress> addresses;
  std::uint32_t next = 1;
  MeshTable incremental;
  incremental.set_domain("mesh.test");
  auto fresh_node = [&](std::string name) {
    const std::uint32_t n = next++;
    MeshNode node{std::move(name), v4(n), (n % 3 == 0) ? std::nullopt : std::optional<IpAddress>(v6(n))};
    names.insert(node.name);
    addresses.insert(*node.ipv4);
    if (node.ipv6) addresses.insert(*node.ipv6);
    return node;
  };
  for (int step = 0; step < 3000; ++step) {
    std::vector<MeshNode> gone, came;
    const int changes = 1 + static_cast<int>(rng.next_u64() % 4);
    for (int c = 0; c < changes; ++c) {
      const auto op = rng.next_u64() % 4;
      if (op == 0 || nodes.empty()) {  // a peer joins
        MeshNode node = fresh_node("n" + std::to_string(next));
        nodes[node.name] = node;
        came.push_back(node);
      } else {
        auto it = nodes.begin();
        std::advance(it, static_cast<long>(rng.next_u64() % nodes.size()));
        const MeshNode before = it->second;
        if (std::find_if(came.begin(), came.end(), [&](const MeshNode& m) { return m.name == before.name; }) != came.end())
          continue;  // a delta names each peer once
        nodes.erase(it);
        gone.push_back(before);
        if (op == 2) {  // renamed (mixed case: names compare case-insensitively)
          MeshNode after = before;
          after.name = (rng.next_u64() % 2 ? "R" : "r") + std::to_string(next++);
          names.insert(after.name);
          nodes[after.name] = after;
          came.push_back(after);
        } else if (op == 3) {  // new addresses, same name
          MeshNode after = fresh_node(before.name);
          nodes[after.name] = after;
          came.push_back(after);
        }  // op 1: removed
      }
    }
    incremental.update_nodes(gone, came);
    if (step % 100 == 0 || step > 2990) {
      std::set<std::string> lower_names;
      for (const std::string& n : names) {
        std::string l = n;
        for (char& ch : l) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
        lower_names.insert(l);
      }
      ASSERT_EQ(view(incremental, lower_names, addresses), view(table_of(nodes), lower_names, addresses)) << "step " << step;
      ASSERT_EQ(incremental.size(), nodes.size());
    }
  }
}

TEST(DnsMeshTable, AStaleGoneEntryLeavesTheCurrentNodeAlone) {
  MeshTable t;
  t.set_domain("mesh.test");
  t.set_nodes({{"desk", IpAddress::v4(0x64400007u), std::nullopt}});
  // A "gone" that does not match what the table holds (another address) changes nothing.
  t.update_nodes({{"desk", IpAddress::v4(0x64400008u), std::nullopt}}, {});
  EXPECT_EQ(t.lookup("desk.mesh.test", type::A).kind, MeshTable::Kind::answer);
  t.update_nodes({{"desk", IpAddress::v4(0x64400007u), std::nullopt}}, {});
  EXPECT_EQ(t.lookup("desk.mesh.test", type::A).kind, MeshTable::Kind::nxdomain);
  EXPECT_EQ(t.size(), 0u);
}

}  // namespace knit::dns
