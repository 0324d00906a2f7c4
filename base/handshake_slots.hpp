// Who may hold one of a server's handshake slots (the coordinator's, coordinator/server.cpp):
// the connections accepted but not yet registered. Without a policy, whoever opens connections fastest and never speaks fills them
// all, and every agent is locked out until those time out (and for good, if the opener keeps
// opening). So slots are shared by source, and a full table makes room instead of refusing:
//
//   accept from S ──► S holds max_per_source? ──yes──► close S's oldest, admit the new one
//                           │ no
//                           ▼
//                     table full (max_total)? ──yes──► close the oldest of the source holding
//                           │ no                        the most slots, admit the new one
//                           ▼
//                        admit
//
// A source is an IPv4 address, or an IPv6 /64 (one subscriber's prefix: its addresses are free
// to the attacker). An agent behind the same NAT as an attacker competes with the attacker only
// for that source's share; every other source keeps getting in. The newest connection is always
// admitted: a handshake takes one round trip, so a legitimate agent finishes long before a flood
// from elsewhere reaches its slot, and one from its own source cycles through max_per_source
// connections first.
//
// The table does no I/O: the server closes what it is told to and removes a
// connection when it registers or closes. O(1) per admit and removal, except that a full table
// scans its sources once (at most max_total of them) to find the busiest.
#pragma once

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <iterator>
#include <list>
#include <optional>
#include <unordered_map>

#include "base/ip.hpp"

namespace knit {

// The 16 bytes a source is known by: an IPv4 address mapped into IPv6, or an IPv6 /64 with its
// interface identifier zeroed.
using SourceKey = std::array<std::uint8_t, 16>;
SourceKey source_key(const IpAddress& address);

struct SourceKeyHash {
  std::size_t operator()(const SourceKey& key) const;
};

// Id: the server's handle on a connection (a session pointer; anything hashable).
template <class Id>
class HandshakeSlots {
 public:
  HandshakeSlots(std::size_t max_total, std::size_t max_per_source)
      : max_total_(std::max<std::size_t>(max_total, 1)),
        max_per_source_(max_per_source == 0 ? max_total_
                                             : std::min(max_per_source, max_total_)) {}

  // Takes a slot for id, from source. Returns the connection to close to make room, if any;
  // it has already lost its slot. id must not hold one.
  std::optional<Id> admit(Id id, const SourceKey& source) {
    std::optional<Id> evicted;
    auto found = by_source_.find(source);
    if (found != by_source_.end() && found->second.size() >= max_per_source_) {
      evicted = evict_oldest(found);
    } else if (slots_.size() >= max_total_) {
      auto busiest = by_source_.begin();
      for (auto it = by_source_.begin(); it != by_source_.end(); ++it)
        if (it->second.size() > busiest->second.size()) busiest = it;
      evicted = evict_oldest(busiest);
    }
    Queue& queue = by_source_[source];
    queue.push_back(id);
    slots_.emplace(id, Slot{source, std::prev(queue.end())});
    return evicted;
  }

  // The slot of a connection that registered or closed; nothing when it holds none.
  void release(Id id) {
    auto it = slots_.find(id);
    if (it == slots_.end()) return;
    auto queue = by_source_.find(it->second.source);
    queue->second.erase(it->second.position);
    if (queue->second.empty()) by_source_.erase(queue);
    slots_.erase(it);
  }

  void clear() {
    slots_.clear();
    by_source_.clear();
  }

  std::size_t size() const { return slots_.size(); }
  std::size_t sources() const { return by_source_.size(); }
  std::size_t held_by(const SourceKey& source) const {
    auto it = by_source_.find(source);
    return it == by_source_.end() ? 0 : it->second.size();
  }

 private:
  using Queue = std::list<Id>;  // one source's connections, oldest first
  using Sources = std::unordered_map<SourceKey, Queue, SourceKeyHash>;
  struct Slot {
    SourceKey source;
    typename Queue::iterator position;
  };

  // Removes the oldest connection of a source (whose queue is never empty) and returns it.
  Id evict_oldest(typename Sources::iterator source) {
    const Id oldest = source->second.front();
    release(oldest);
    return oldest;
  }

  std::size_t max_total_;
  std::size_t max_per_source_;
  Sources by_source_;
  std::unordered_map<Id, Slot> slots_;
};

}  // namespace knit
