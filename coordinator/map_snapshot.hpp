// The published peer map at one version, frozen, as the pages a joining agent is sent
// (control/peer_codec.hpp). The server makes one per version when an agent needs it and every
// session streaming that version shares it: the entries are encoded once, and a session
// seals its pages one at a time as its socket drains, so a joiner's map never sits whole in a
// send queue.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "control/messages.hpp"
#include "control/peer_codec.hpp"

namespace knit::coordinator {

class MapSnapshot {
 public:
  // entries[i] is keys[i]'s encoded entry; keys sorted.
  MapSnapshot(std::uint64_t version, const control::V6Base& base,
              std::vector<control::NodeKey> keys, std::string data,
              std::vector<std::uint32_t> offsets);

  std::uint64_t version() const { return version_; }
  std::size_t page_count() const { return pages_.size(); }
  std::size_t peer_count() const { return keys_.size(); }
  // Page i as node `own` must see it: every entry of the page but its own; with `only` (sorted),
  // only the entries of those keys (a map trimmed by the access policy, visibility.hpp).
  std::string page_for(std::size_t i, const control::NodeKey& own,
                       const std::vector<control::NodeKey>* only = nullptr) const;
  const std::vector<control::NodeKey>& keys() const { return keys_; }
  std::size_t bytes() const { return data_.size(); }

 private:
  std::uint64_t version_;
  control::V6Base base_;
  std::vector<control::NodeKey> keys_;
  std::string data_;                     // the entries, back to back
  std::vector<std::uint32_t> offsets_;   // entry i is data_[offsets_[i], offsets_[i + 1])
  std::vector<std::pair<std::size_t, std::size_t>> pages_;  // [first, last) entry of each
};

}  // namespace knit::coordinator
