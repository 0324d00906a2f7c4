// The translation table: mappings (RFC 4787: internal endpoint -> external endpoint) and
// sessions (one remote endpoint talking through a mapping, with its TCP state and timer),
// their hash indexes, the expiry timers and external port allocation. No packets here: the
// engine parses and rewrites; this class only answers "who is this?" and keeps the books.
//
//   mappings_ slab (24 B each)            sessions_ slab (40 B each)
//   ┌────────────────────────────┐        ┌─────────────────────────────────────┐
//   │ X:x -> X':x'  [key Y, y]   │◄───────│ mapping  X:x  Y:y  X'idx:x'  state  │
//   │ sessions (refcount)        │        │ expires  timer generation           │
//   └────────────────────────────┘        └─────────────────────────────────────┘
//   indexes (8 B a slot, keys live in the slabs):
//     mapping_key_  (proto, X, x [, Y [, y]])  -> mapping   per the mapping behaviour
//     mapping_ext_  (proto, X'idx, x')          -> mapping   external ports are never shared
//     session_out_  (proto, X, x, Y, y)         -> session   outbound fast path
//     session_in_   (proto, X'idx, x', Y, y)    -> session   inbound fast path
//   statics_     (proto, X, x) -> port-forward mapping (tried before mapping_key_)
//   address_refs_ (mapping, Y) -> live sessions   address-dependent filtering only
//   timers_      min-heap of (expiry, session, generation), lazily corrected: a refresh only
//                writes the session's expiry; the heap entry is re-filed when it comes due.
//
// A mapping lives while any session uses it (or while its port forward exists), so its
// lifetime is that of its longest-lived session, as with Linux conntrack.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <unordered_map>
#include <utility>
#include <vector>

#include "base/random.hpp"
#include "base/time.hpp"
#include "nat/config.hpp"
#include "nat/hash_index.hpp"
#include "nat/port_space.hpp"
#include "nat/tcp_state.hpp"
#include "nat/verdict.hpp"

namespace knit::nat {

inline constexpr std::uint32_t kNoIndex = HashIndex::kNone;
inline constexpr std::uint16_t kNoForward = 0xffff;

struct MappingEntry {
  std::uint32_t internal_address = 0;
  std::uint32_t key_remote_address = 0;  // Y in the key (address-dependent mappings and up)
  std::uint32_t sessions = 0;            // live sessions using this mapping
  std::uint16_t internal_port = 0;       // ICMP: query identifier
  std::uint16_t external_port = 0;
  std::uint16_t key_remote_port = 0;   // y in the key (address-and-port-dependent only)
  std::uint16_t external_index = 0;    // into Config::external_addresses
  std::uint16_t forward = kNoForward;  // the port forward that pins it, if any
  Protocol protocol = Protocol::udp;
  bool live : 1 = false;
  bool keyed : 1 = false;  // in mapping_key_: new flows of X:x may use it
};
static_assert(sizeof(MappingEntry) <= 24);

struct SessionEntry {
  Instant expires{};
  std::uint32_t internal_address = 0;  // copies of the mapping's endpoints, so both lookups
  std::uint32_t remote_address = 0;    // compare keys on this one cache line
  std::uint32_t mapping = kNoIndex;
  std::uint32_t generation = 0;  // bumped by every timer filing; stale heap entries skip
  std::uint16_t internal_port = 0;
  std::uint16_t external_port = 0;
  std::uint16_t remote_port = 0;  // 0 for ICMP queries
  std::uint16_t external_index = 0;
  std::uint16_t forward = kNoForward;  // the mapping's port forward, for its counters
  Protocol protocol = Protocol::udp;
  TcpState tcp_state = TcpState::none;
  bool live = false;
  bool opened_inbound = false;  // created by an inbound packet (EIF, ADF, port forward)
};
static_assert(sizeof(SessionEntry) <= 40);

// The (internal or remote) endpoints of a flow in host byte order.
struct FlowTuple {
  Protocol protocol = Protocol::udp;
  std::uint32_t internal_address = 0;
  std::uint16_t internal_port = 0;
  std::uint32_t remote_address = 0;
  std::uint16_t remote_port = 0;
};

class NatTable {
 public:
  NatTable(const Config& config, Random& rng);

  // Lookups return kNoIndex when absent. They ignore expiry: the caller compares with `now`.
  std::uint32_t find_session_outbound(const FlowTuple& flow) const;
  std::uint32_t find_session_inbound(Protocol protocol, std::uint16_t external_index,
                                     std::uint16_t external_port, std::uint32_t remote_address,
                                     std::uint16_t remote_port) const;
  std::uint32_t find_mapping_external(Protocol protocol, std::uint16_t external_index,
                                      std::uint16_t external_port) const;
  // The mapping a new outbound flow uses: its port forward's, else the one the mapping
  // behaviour keys it to (RFC 4787 §4.1).
  std::uint32_t find_mapping_for(const FlowTuple& flow) const;
  // Address-dependent filtering (RFC 4787 §5): has X:x sent to Y through this mapping?
  bool address_contacted(std::uint32_t mapping, std::uint32_t remote_address) const;

  struct Created {
    std::uint32_t index = kNoIndex;
    DropReason error = DropReason::none;  // table_full or ports_exhausted
  };
  Created create_mapping(const FlowTuple& flow);
  // A port forward's mapping: fixed external port, never expires while the forward exists.
  Created create_static_mapping(Protocol protocol, std::uint16_t external_index,
                                std::uint16_t external_port, std::uint32_t internal_address,
                                std::uint16_t internal_port, std::uint16_t forward);
  Created create_session(std::uint32_t mapping, std::uint32_t remote_address,
                         std::uint16_t remote_port, Instant expires, bool opened_inbound);

  const MappingEntry& mapping(std::uint32_t index) const { return mappings_[index]; }
  const SessionEntry& session(std::uint32_t index) const { return sessions_[index]; }
  void set_tcp_state(std::uint32_t session, TcpState state) {
    sessions_[session].tcp_state = state;
  }
  // Moves a session's expiry; earlier expiries re-file the timer so they fire on time.
  void set_expiry(std::uint32_t session, Instant expires);

  void remove_session(std::uint32_t session);
  // Frees a dynamic mapping no session uses (one created for a session that then failed).
  void discard_if_unused(std::uint32_t mapping);
  // Unpins a port-forward mapping: new flows no longer use it, and it lives on only while
  // its existing sessions do (as removing a DNAT rule leaves conntrack entries alone).
  void release_static_mapping(std::uint32_t mapping);

  // Removes up to `budget` sessions whose expiry is <= now; returns how many it removed.
  std::size_t expire(Instant now, std::size_t budget);
  // No session expires before this (it may be early: refreshed sessions are re-filed lazily).
  std::optional<Instant> next_deadline() const {
    if (timers_.empty()) return std::nullopt;
    return timers_.front().at;
  }

  // RFC 4787 REQ-2: paired pooling, one internal address always gets the same external one.
  std::uint16_t external_index_for(std::uint32_t internal_address) const;
  std::uint32_t external_address(std::uint16_t index) const { return external_[index]; }
  std::size_t external_count() const { return external_.size(); }
  // The pool index of `address`, or nullopt if it is not an external address.
  std::optional<std::uint16_t> external_index_of(std::uint32_t address) const {
    if (external_.size() <= 4) {  // the usual pool: a scan beats a search
      for (std::size_t i = 0; i < external_.size(); ++i)
        if (external_[i] == address) return static_cast<std::uint16_t>(i);
      return std::nullopt;
    }
    return search_external(address);
  }
  bool port_taken(Protocol protocol, std::uint16_t external_index, std::uint16_t port) const;

  std::size_t mappings_live() const { return mapping_count_; }
  std::size_t sessions_live() const { return session_count_; }
  std::uint64_t mappings_created() const { return mappings_created_; }
  std::uint64_t mappings_removed() const { return mappings_removed_; }
  std::uint64_t sessions_created() const { return sessions_created_; }
  std::uint64_t sessions_removed() const { return sessions_removed_; }
  std::size_t slab_size() const { return sessions_.size(); }
  std::size_t mapping_slab_size() const { return mappings_.size(); }
  // Bytes the table holds (slabs, indexes, timers, port bitmaps), by capacity.
  std::size_t memory_bytes() const;

 private:
  std::uint64_t hash_mapping_key(const FlowTuple& key) const;
  std::uint64_t hash_mapping_ext(Protocol protocol, std::uint16_t index, std::uint16_t port) const;
  std::uint64_t hash_session_out(Protocol protocol, std::uint32_t internal_address,
                                 std::uint16_t internal_port, std::uint32_t remote_address,
                                 std::uint16_t remote_port) const;
  std::uint64_t hash_session_in(Protocol protocol, std::uint16_t index, std::uint16_t port,
                                std::uint32_t remote_address, std::uint16_t remote_port) const;
  static std::uint64_t static_key(Protocol protocol, std::uint32_t address, std::uint16_t port);
  std::optional<std::uint16_t> search_external(std::uint32_t address) const;
  // The mapping key of a flow: its remote parts cleared as the mapping behaviour says.
  FlowTuple mapping_key_of(const FlowTuple& flow) const;
  FlowTuple mapping_key_of(const MappingEntry& m) const;
  std::optional<std::uint16_t> allocate_port(Protocol protocol, std::uint16_t external_index,
                                             std::uint16_t internal_port);
  PortSpace& ports(Protocol protocol, std::uint16_t external_index);
  const PortSpace& ports(Protocol protocol, std::uint16_t external_index) const;
  std::uint32_t new_mapping_slot();
  void free_mapping(std::uint32_t index);
  void file_timer(std::uint32_t session);
  void rebuild_timers();

  struct Timer {
    Instant at;
    std::uint32_t session;
    std::uint32_t generation;
  };
  struct TimerLater {
    bool operator()(const Timer& a, const Timer& b) const { return a.at > b.at; }
  };

  Mapping mapping_behaviour_;
  Filtering filtering_;
  bool port_preservation_;
  bool port_parity_;
  bool low_ports_stay_low_;
  std::uint16_t port_min_;
  std::uint16_t port_max_;
  std::size_t max_mappings_;
  std::size_t max_sessions_;
  Random& rng_;
  std::uint64_t salt_;
  std::vector<std::uint32_t> external_;                                   // pool, host order
  std::vector<std::pair<std::uint32_t, std::uint16_t>> external_sorted_;  // (address, index)

  std::vector<MappingEntry> mappings_;
  std::vector<std::uint32_t> free_mappings_;
  std::vector<SessionEntry> sessions_;
  std::vector<std::uint32_t> free_sessions_;
  HashIndex mapping_key_;
  HashIndex mapping_ext_;
  HashIndex session_out_;
  HashIndex session_in_;
  std::unordered_map<std::uint64_t, std::uint32_t> statics_;
  std::unordered_map<std::uint64_t, std::uint32_t> address_refs_;
  std::vector<PortSpace> port_spaces_;  // [external index * 3 + protocol slot]
  std::vector<Timer> timers_;

  std::size_t mapping_count_ = 0;
  std::size_t session_count_ = 0;
  std::uint64_t mappings_created_ = 0;
  std::uint64_t mappings_removed_ = 0;
  std::uint64_t sessions_created_ = 0;
  std::uint64_t sessions_removed_ = 0;
};

}  // namespace knit::nat
