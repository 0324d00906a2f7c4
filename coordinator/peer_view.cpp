#include "coordinator/peer_view.hpp"

#include <algorithm>

#include "control/constants.hpp"

namespace knit::coordinator {

using control::NodeKey;
using control::PeerInfo;

namespace {

std::string entry_of(const PeerInfo& peer, const control::V6Base& base) {
  std::string out;
  control::append_peer(out, peer, base);
  return out;
}

template <typename Items>
void append_items(std::string& out, const Items& items, const NodeKey* skip) {
  std::size_t n = items.size();
  if (skip != nullptr)
    n -= static_cast<std::size_t>(std::count_if(
        items.begin(), items.end(), [&](const auto& item) { return item.key == *skip; }));
  control::append_count(out, n);
  for (const auto& item : items)
    if (skip == nullptr || item.key != *skip) out += item.bytes;
}

}  // namespace

PeerView::PeerView(const control::V6Base& base) : base_(base) {}

void PeerView::reset(const std::vector<PeerInfo>& peers) {
  version_ = 1;
  published_.clear();
  pending_.clear();
  added_.clear();
  changed_.clear();
  removed_.clear();
  entry_bytes_ = 0;
  snapshot_.reset();
  for (const PeerInfo& peer : peers) {
    std::string bytes = entry_of(peer, base_);
    entry_bytes_ += bytes.size();
    published_[peer.node_key] = Entry{peer, std::move(bytes)};
  }
}

const PeerInfo* PeerView::find(const NodeKey& key) const {
  if (auto it = pending_.find(key); it != pending_.end()) return it->second ? &*it->second : nullptr;
  auto it = published_.find(key);
  return it == published_.end() ? nullptr : &it->second.info;
}

std::vector<NodeKey> PeerView::keys() const {
  std::vector<NodeKey> out;
  out.reserve(published_.size() + pending_.size());
  for (const auto& [key, entry] : published_) {
    auto p = pending_.find(key);
    if (p == pending_.end() || p->second) out.push_back(key);
  }
  for (const auto& [key, state] : pending_)
    if (state && published_.count(key) == 0) out.push_back(key);
  return out;
}

void PeerView::set(PeerInfo peer) {
  const NodeKey key = peer.node_key;
  pending_[key] = std::move(peer);
}

void PeerView::remove(const NodeKey& key) { pending_[key] = std::nullopt; }

std::optional<PeerView::Published> PeerView::publish() {
  if (pending_.empty()) return std::nullopt;
  added_.clear();
  changed_.clear();
  removed_.clear();
  Published out;
  std::size_t bytes = 0;
  auto it_pending = pending_.begin();
  while (it_pending != pending_.end() && out.keys.size() < control::kMaxPeersPerMessage &&
         bytes < kPeerDeltaTargetBytes) {
    auto& [key, state] = *it_pending;
    auto it = published_.find(key);
    if (state) {
      if (it == published_.end() || !(it->second.info == *state)) {
        std::string entry = entry_of(*state, base_);
        bytes += entry.size();
        entry_bytes_ += entry.size();
        if (it == published_.end()) {
          out.added.push_back(key);
          added_.push_back(Item{key, entry});
          published_[key] = Entry{std::move(*state), std::move(entry)};
        } else {
          changed_.push_back(Item{key, entry});
          entry_bytes_ -= it->second.bytes.size();
          it->second = Entry{std::move(*state), std::move(entry)};
        }
        out.keys.push_back(key);  // pending_ is ordered by key, so keys is sorted
      }
    } else if (it != published_.end()) {
      bytes += key.size();
      removed_.push_back(key);
      entry_bytes_ -= it->second.bytes.size();
      published_.erase(it);
      out.keys.push_back(key);
    }
    it_pending = pending_.erase(it_pending);
  }
  if (out.keys.empty()) return std::nullopt;
  out.version = ++version_;
  snapshot_.reset();
  out.text = delta_text(nullptr);
  return out;
}

std::string PeerView::delta_text(const NodeKey* skip) const {
  std::string out = control::delta_header(version_, base_);
  append_items(out, added_, skip);
  append_items(out, changed_, skip);
  std::size_t removed = removed_.size();
  if (skip != nullptr) removed -= static_cast<std::size_t>(std::count(removed_.begin(), removed_.end(), *skip));
  control::append_count(out, removed);
  for (const NodeKey& key : removed_)
    if (skip == nullptr || key != *skip) control::append_key(out, key);
  return out;
}

std::string PeerView::delta_text_for(const NodeKey& own) const { return delta_text(&own); }

const std::string* PeerView::entry(const NodeKey& key) const {
  const auto it = published_.find(key);
  return it == published_.end() ? nullptr : &it->second.bytes;
}

std::string PeerView::delta_text_of(const std::vector<const std::string*>& added,
                                    const std::vector<const std::string*>& changed,
                                    const std::vector<NodeKey>& removed) const {
  std::string out = control::delta_header(version_, base_);
  control::append_count(out, added.size());
  for (const std::string* e : added) out += *e;
  control::append_count(out, changed.size());
  for (const std::string* e : changed) out += *e;
  control::append_count(out, removed.size());
  for (const NodeKey& key : removed) control::append_key(out, key);
  return out;
}

PeerView::Published PeerView::bump() {
  added_.clear();
  changed_.clear();
  removed_.clear();
  Published out;
  out.version = ++version_;
  snapshot_.reset();
  out.text = delta_text(nullptr);
  return out;
}

std::shared_ptr<const MapSnapshot> PeerView::snapshot() {
  if (snapshot_) return snapshot_;
  std::vector<NodeKey> keys;
  keys.reserve(published_.size());
  std::string data;
  data.reserve(entry_bytes_);
  std::vector<std::uint32_t> offsets;
  offsets.reserve(published_.size() + 1);
  for (const auto& [key, entry] : published_) {
    keys.push_back(key);
    offsets.push_back(static_cast<std::uint32_t>(data.size()));
    data += entry.bytes;
  }
  offsets.push_back(static_cast<std::uint32_t>(data.size()));
  snapshot_ = std::make_shared<const MapSnapshot>(version_, base_, std::move(keys),
                                                  std::move(data), std::move(offsets));
  return snapshot_;
}

}  // namespace knit::coordinator
