// The peer map the server publishes, sans I/O: the published map at version() (what every agent
// holds, less its own entry) plus changes not yet published.
//
// Each published peer is kept with its encoded entry (control/peer_codec.hpp), so a delta is
// spliced from the entries of the peers it mentions, once for everybody, and a full map is a
// snapshot of the entries (map_snapshot.hpp), made once per version that someone joins at.
// A delta holds at most kMaxPeersPerMessage peers and about kPeerDeltaTargetBytes: a larger set
// of pending changes (a reload after the database came back, say) goes out as several
// versions, the rest staying pending.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "control/messages.hpp"
#include "control/peer_codec.hpp"
#include "coordinator/map_snapshot.hpp"

namespace knit::coordinator {

inline constexpr std::size_t kPeerDeltaTargetBytes = std::size_t{256} << 10;

class PeerView {
 public:
  // base: the mesh's IPv6 addresses are base + IPv4 (ipam.hpp), so entries leave them out.
  explicit PeerView(const control::V6Base& base = {});

  // Starts over at version 1 with these peers published and nothing pending.
  void reset(const std::vector<control::PeerInfo>& peers);

  // The newest state of a node (pending if it changed since the last publish); nullptr when
  // there is no such node (or it is about to be removed).
  const control::PeerInfo* find(const control::NodeKey& key) const;
  // Every node of the newest state.
  std::vector<control::NodeKey> keys() const;
  void set(control::PeerInfo peer);
  void remove(const control::NodeKey& key);
  bool has_pending() const { return !pending_.empty(); }

  struct Published {
    std::uint64_t version = 0;
    std::vector<control::NodeKey> keys;  // sorted: every node the delta mentions
    std::vector<control::NodeKey> added;  // sorted: those of keys it adds
    std::string text;                    // the delta, for a node not in keys
  };
  // Turns pending changes into the next version (up to the size limits above; has_pending()
  // tells whether some are left). nullopt when none of them is visible (a node set to what it
  // already was); the version then stays.
  std::optional<Published> publish();
  // The last published delta as node `own` must see it: without its own entry.
  std::string delta_text_for(const control::NodeKey& own) const;
  // The published map at version(), for pages (shared until the next publish).
  std::shared_ptr<const MapSnapshot> snapshot();

  std::uint64_t version() const { return version_; }
  std::size_t size() const { return published_.size(); }

  // For maps trimmed by the access policy (server_publish.cpp): a published peer's encoded
  // entry (nullptr: not published), every published key in order, and a delta of the current
  // version made of the given entries and removals.
  const std::string* entry(const control::NodeKey& key) const;
  template <typename F>
  void for_each_published(F&& f) const {
    for (const auto& [key, entry] : published_) f(key);
  }
  std::string delta_text_of(const std::vector<const std::string*>& added,
                            const std::vector<const std::string*>& changed,
                            const std::vector<control::NodeKey>& removed) const;
  // A new version with no change in it: what a change of who sees whom rides on when the peers
  // themselves did not change (every agent must step to the same version).
  Published bump();

 private:
  struct Entry {
    control::PeerInfo info;
    std::string bytes;  // its encoded entry
  };
  struct Item {  // one entry of the last delta
    control::NodeKey key{};
    std::string bytes;
  };
  std::string delta_text(const control::NodeKey* skip) const;

  control::V6Base base_;
  std::uint64_t version_ = 1;
  std::map<control::NodeKey, Entry> published_;
  std::map<control::NodeKey, std::optional<control::PeerInfo>> pending_;  // nullopt: removed
  std::vector<Item> added_;
  std::vector<Item> changed_;
  std::vector<control::NodeKey> removed_;
  std::size_t entry_bytes_ = 0;  // of every published entry
  std::shared_ptr<const MapSnapshot> snapshot_;  // of version_, or null
};

}  // namespace knit::coordinator
