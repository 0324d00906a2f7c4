#include "nat/nat_table.hpp"

#include <algorithm>

#include "nat/wire.hpp"

namespace knit::nat {

namespace {

std::size_t protocol_slot(Protocol protocol) {
  switch (protocol) {
    case Protocol::udp: return 0;
    case Protocol::tcp: return 1;
    case Protocol::icmp: return 2;
  }
  return 0;
}

std::uint64_t pack_ports(Protocol protocol, std::uint16_t a, std::uint16_t b) {
  return (std::uint64_t{static_cast<std::uint8_t>(protocol)} << 32) | (std::uint64_t{a} << 16) | b;
}

// Sizes the indexes for the configured bound up front (at most 64 Ki slots), so a busy
// table seldom rehashes while it fills.
std::size_t initial_index_size(std::size_t bound) {
  return std::min<std::size_t>(bound, 1u << 15) * 2;
}

}  // namespace

NatTable::NatTable(const Config& config, Random& rng)
    : mapping_behaviour_(config.mapping),
      filtering_(config.filtering),
      port_preservation_(config.port_preservation),
      port_parity_(config.port_parity),
      low_ports_stay_low_(config.low_ports_stay_low),
      port_min_(config.port_min),
      port_max_(config.port_max),
      max_mappings_(config.max_mappings),
      max_sessions_(config.max_sessions),
      rng_(rng),
      salt_(rng.next_u64()),
      mapping_key_(initial_index_size(config.max_mappings) / 4),
      mapping_ext_(initial_index_size(config.max_mappings) / 4),
      session_out_(initial_index_size(config.max_sessions) / 4),
      session_in_(initial_index_size(config.max_sessions) / 4) {
  for (std::size_t i = 0; i < config.external_addresses.size(); ++i) {
    const std::uint32_t a = config.external_addresses[i].v4_host_order();
    external_.push_back(a);
    external_sorted_.emplace_back(a, static_cast<std::uint16_t>(i));
  }
  std::sort(external_sorted_.begin(), external_sorted_.end());
  port_spaces_.resize(external_.size() * 3);
}

// ---- hashing ---------------------------------------------------------------------------

std::uint64_t NatTable::hash_mapping_key(const FlowTuple& k) const {
  return hash_words((std::uint64_t{k.internal_address} << 32) | k.remote_address,
                    pack_ports(k.protocol, k.internal_port, k.remote_port), salt_ ^ 0x6d6170);
}

std::uint64_t NatTable::hash_mapping_ext(Protocol protocol, std::uint16_t index,
                                         std::uint16_t port) const {
  return hash_words(index, pack_ports(protocol, port, 0), salt_ ^ 0x657874);
}

std::uint64_t NatTable::hash_session_out(Protocol protocol, std::uint32_t internal_address,
                                         std::uint16_t internal_port, std::uint32_t remote_address,
                                         std::uint16_t remote_port) const {
  return hash_words((std::uint64_t{internal_address} << 32) | remote_address,
                    pack_ports(protocol, internal_port, remote_port), salt_);
}

std::uint64_t NatTable::hash_session_in(Protocol protocol, std::uint16_t index, std::uint16_t port,
                                        std::uint32_t remote_address,
                                        std::uint16_t remote_port) const {
  return hash_words((std::uint64_t{index} << 32) | remote_address,
                    pack_ports(protocol, port, remote_port), ~salt_);
}

std::uint64_t NatTable::static_key(Protocol protocol, std::uint32_t address, std::uint16_t port) {
  return (std::uint64_t{address} << 24) | (std::uint64_t{port} << 8) |
         static_cast<std::uint8_t>(protocol);
}

FlowTuple NatTable::mapping_key_of(const FlowTuple& flow) const {
  FlowTuple key = flow;
  // RFC 4787 §4.1: EIM keys on X:x alone, ADM adds Y, APDM adds Y:y.
  if (mapping_behaviour_ != Mapping::address_and_port_dependent) key.remote_port = 0;
  if (mapping_behaviour_ == Mapping::endpoint_independent) key.remote_address = 0;
  return key;
}

FlowTuple NatTable::mapping_key_of(const MappingEntry& m) const {
  return FlowTuple{m.protocol, m.internal_address, m.internal_port, m.key_remote_address,
                   m.key_remote_port};
}

// ---- lookups ---------------------------------------------------------------------------

std::uint32_t NatTable::find_session_outbound(const FlowTuple& f) const {
  const std::uint64_t h = hash_session_out(f.protocol, f.internal_address, f.internal_port,
                                           f.remote_address, f.remote_port);
  return session_out_.find(h, [&](std::uint32_t i) {
    const SessionEntry& s = sessions_[i];
    return s.internal_address == f.internal_address && s.remote_address == f.remote_address &&
           s.internal_port == f.internal_port && s.remote_port == f.remote_port &&
           s.protocol == f.protocol;
  });
}

std::uint32_t NatTable::find_session_inbound(Protocol protocol, std::uint16_t external_index,
                                             std::uint16_t external_port,
                                             std::uint32_t remote_address,
                                             std::uint16_t remote_port) const {
  const std::uint64_t h =
      hash_session_in(protocol, external_index, external_port, remote_address, remote_port);
  return session_in_.find(h, [&](std::uint32_t i) {
    const SessionEntry& s = sessions_[i];
    return s.remote_address == remote_address && s.external_port == external_port &&
           s.remote_port == remote_port && s.external_index == external_index &&
           s.protocol == protocol;
  });
}

std::uint32_t NatTable::find_mapping_external(Protocol protocol, std::uint16_t external_index,
                                              std::uint16_t external_port) const {
  return mapping_ext_.find(hash_mapping_ext(protocol, external_index, external_port),
                           [&](std::uint32_t i) {
                             const MappingEntry& m = mappings_[i];
                             return m.external_port == external_port &&
                                    m.external_index == external_index && m.protocol == protocol;
                           });
}

std::uint32_t NatTable::find_mapping_for(const FlowTuple& flow) const {
  if (!statics_.empty()) {
    auto it = statics_.find(static_key(flow.protocol, flow.internal_address, flow.internal_port));
    if (it != statics_.end()) return it->second;
  }
  const FlowTuple key = mapping_key_of(flow);
  return mapping_key_.find(hash_mapping_key(key), [&](std::uint32_t i) {
    const MappingEntry& m = mappings_[i];
    return m.internal_address == key.internal_address && m.internal_port == key.internal_port &&
           m.key_remote_address == key.remote_address && m.key_remote_port == key.remote_port &&
           m.protocol == key.protocol;
  });
}

bool NatTable::address_contacted(std::uint32_t mapping, std::uint32_t remote_address) const {
  return address_refs_.count((std::uint64_t{mapping} << 32) | remote_address) != 0;
}

std::optional<std::uint16_t> NatTable::search_external(std::uint32_t address) const {
  auto it = std::lower_bound(external_sorted_.begin(), external_sorted_.end(),
                             std::make_pair(address, std::uint16_t{0}));
  if (it != external_sorted_.end() && it->first == address) return it->second;
  return std::nullopt;
}

std::uint16_t NatTable::external_index_for(std::uint32_t internal_address) const {
  if (external_.size() == 1) return 0;
  // Config::own_address_flows: the host's own flows keep their own address.
  if (const auto own = external_index_of(internal_address)) return *own;
  return static_cast<std::uint16_t>(hash_words(internal_address, 0, salt_ ^ 0x706f6f6c) %
                                    external_.size());
}

// ---- ports -----------------------------------------------------------------------------

PortSpace& NatTable::ports(Protocol protocol, std::uint16_t external_index) {
  return port_spaces_[std::size_t{external_index} * 3 + protocol_slot(protocol)];
}

const PortSpace& NatTable::ports(Protocol protocol, std::uint16_t external_index) const {
  return port_spaces_[std::size_t{external_index} * 3 + protocol_slot(protocol)];
}

bool NatTable::port_taken(Protocol protocol, std::uint16_t external_index,
                          std::uint16_t port) const {
  return ports(protocol, external_index).taken(port);
}

std::optional<std::uint16_t> NatTable::allocate_port(Protocol protocol,
                                                     std::uint16_t external_index,
                                                     std::uint16_t internal_port) {
  PortSpace& space = ports(protocol, external_index);
  std::uint16_t lo = 0;
  std::uint16_t hi = 0xffff;
  if (protocol == Protocol::icmp) {
    lo = 1;  // query identifiers: the whole space (0 only when preserved)
  } else if (internal_port <= kLowPortMax && low_ports_stay_low_) {
    lo = kLowPortMin;  // RFC 4787 REQ-3a: a well-known port maps to a well-known port
    hi = kLowPortMax;
  } else {
    lo = port_min_;
    hi = port_max_;
  }
  // RFC 4787 §4.2.1: preserve the port when free ("port preservation").
  const bool in_range = protocol == Protocol::icmp || (internal_port >= lo && internal_port <= hi);
  if (port_preservation_ && in_range && !space.taken(internal_port)) return internal_port;
  // Otherwise unpredictable (RFC 6056 §3.3.1): the first free port after a random one,
  // keeping parity (RFC 4787 REQ-4, a SHOULD: any parity when that class is full).
  const std::uint16_t start =
      static_cast<std::uint16_t>(lo + rng_.uniform(static_cast<std::uint32_t>(hi - lo) + 1));
  PortSpace::Parity parity = PortSpace::Parity::any;
  if (port_parity_ && protocol != Protocol::icmp)
    parity = (internal_port & 1) ? PortSpace::Parity::odd : PortSpace::Parity::even;
  if (auto port = space.find_free(lo, hi, start, parity)) return port;
  if (parity != PortSpace::Parity::any)
    return space.find_free(lo, hi, start, PortSpace::Parity::any);
  return std::nullopt;
}

// ---- creation --------------------------------------------------------------------------

std::uint32_t NatTable::new_mapping_slot() {
  if (!free_mappings_.empty()) {
    const std::uint32_t i = free_mappings_.back();
    free_mappings_.pop_back();
    return i;
  }
  mappings_.emplace_back();
  return static_cast<std::uint32_t>(mappings_.size() - 1);
}

NatTable::Created NatTable::create_mapping(const FlowTuple& flow) {
  if (mapping_count_ >= max_mappings_) return {kNoIndex, DropReason::table_full};
  const std::uint16_t ext = external_index_for(flow.internal_address);
  const auto port = allocate_port(flow.protocol, ext, flow.internal_port);
  if (!port) return {kNoIndex, DropReason::ports_exhausted};
  const FlowTuple key = mapping_key_of(flow);
  const std::uint32_t i = new_mapping_slot();
  MappingEntry& m = mappings_[i];
  m = MappingEntry{};
  m.internal_address = key.internal_address;
  m.internal_port = key.internal_port;
  m.key_remote_address = key.remote_address;
  m.key_remote_port = key.remote_port;
  m.external_index = ext;
  m.external_port = *port;
  m.protocol = flow.protocol;
  m.live = true;
  m.keyed = true;
  ports(flow.protocol, ext).take(*port);
  mapping_key_.insert(hash_mapping_key(key), i);
  mapping_ext_.insert(hash_mapping_ext(flow.protocol, ext, *port), i);
  ++mapping_count_;
  ++mappings_created_;
  return {i, DropReason::none};
}

NatTable::Created NatTable::create_static_mapping(Protocol protocol, std::uint16_t external_index,
                                                  std::uint16_t external_port,
                                                  std::uint32_t internal_address,
                                                  std::uint16_t internal_port,
                                                  std::uint16_t forward) {
  if (mapping_count_ >= max_mappings_) return {kNoIndex, DropReason::table_full};
  if (ports(protocol, external_index).taken(external_port))
    return {kNoIndex, DropReason::ports_exhausted};
  const std::uint32_t i = new_mapping_slot();
  MappingEntry& m = mappings_[i];
  m = MappingEntry{};
  m.internal_address = internal_address;
  m.internal_port = internal_port;
  m.external_index = external_index;
  m.external_port = external_port;
  m.protocol = protocol;
  m.forward = forward;
  m.live = true;
  ports(protocol, external_index).take(external_port);
  mapping_ext_.insert(hash_mapping_ext(protocol, external_index, external_port), i);
  // Several forwards may lead to one internal endpoint; its new flows leave by the first.
  statics_.emplace(static_key(protocol, internal_address, internal_port), i);
  ++mapping_count_;
  ++mappings_created_;
  return {i, DropReason::none};
}

NatTable::Created NatTable::create_session(std::uint32_t mapping, std::uint32_t remote_address,
                                           std::uint16_t remote_port, Instant expires,
                                           bool opened_inbound) {
  if (session_count_ >= max_sessions_) return {kNoIndex, DropReason::table_full};
  std::uint32_t i = 0;
  if (!free_sessions_.empty()) {
    i = free_sessions_.back();
    free_sessions_.pop_back();
  } else {
    sessions_.emplace_back();
    i = static_cast<std::uint32_t>(sessions_.size() - 1);
  }
  MappingEntry& m = mappings_[mapping];
  SessionEntry& s = sessions_[i];
  const std::uint32_t generation = s.generation;  // survives reuse: old timers stay stale
  s = SessionEntry{};
  s.generation = generation;
  s.expires = expires;
  s.internal_address = m.internal_address;
  s.internal_port = m.internal_port;
  s.remote_address = remote_address;
  s.remote_port = remote_port;
  s.external_index = m.external_index;
  s.external_port = m.external_port;
  s.mapping = mapping;
  s.forward = m.forward;
  s.protocol = m.protocol;
  s.live = true;
  s.opened_inbound = opened_inbound;
  session_out_.insert(hash_session_out(s.protocol, s.internal_address, s.internal_port,
                                       remote_address, remote_port),
                      i);
  session_in_.insert(
      hash_session_in(s.protocol, s.external_index, s.external_port, remote_address, remote_port),
      i);
  if (filtering_ == Filtering::address_dependent)
    ++address_refs_[(std::uint64_t{mapping} << 32) | remote_address];
  ++m.sessions;
  ++session_count_;
  ++sessions_created_;
  file_timer(i);
  return {i, DropReason::none};
}

// ---- removal ---------------------------------------------------------------------------

void NatTable::free_mapping(std::uint32_t index) {
  MappingEntry& m = mappings_[index];
  mapping_ext_.erase(hash_mapping_ext(m.protocol, m.external_index, m.external_port), index);
  if (m.keyed) mapping_key_.erase(hash_mapping_key(mapping_key_of(m)), index);
  if (m.forward != kNoForward) {
    auto it = statics_.find(static_key(m.protocol, m.internal_address, m.internal_port));
    if (it != statics_.end() && it->second == index) statics_.erase(it);
  }
  ports(m.protocol, m.external_index).release(m.external_port);
  m.live = false;
  free_mappings_.push_back(index);
  --mapping_count_;
  ++mappings_removed_;
}

void NatTable::remove_session(std::uint32_t index) {
  SessionEntry& s = sessions_[index];
  if (!s.live) return;
  session_out_.erase(hash_session_out(s.protocol, s.internal_address, s.internal_port,
                                      s.remote_address, s.remote_port),
                     index);
  session_in_.erase(hash_session_in(s.protocol, s.external_index, s.external_port, s.remote_address,
                                    s.remote_port),
                    index);
  if (filtering_ == Filtering::address_dependent) {
    auto it = address_refs_.find((std::uint64_t{s.mapping} << 32) | s.remote_address);
    if (it != address_refs_.end() && --it->second == 0) address_refs_.erase(it);
  }
  MappingEntry& m = mappings_[s.mapping];
  --m.sessions;
  if (m.sessions == 0 && m.forward == kNoForward) free_mapping(s.mapping);
  s.live = false;
  ++s.generation;
  free_sessions_.push_back(index);
  --session_count_;
  ++sessions_removed_;
}

void NatTable::discard_if_unused(std::uint32_t mapping) {
  const MappingEntry& m = mappings_[mapping];
  if (m.live && m.sessions == 0 && m.forward == kNoForward) free_mapping(mapping);
}

void NatTable::release_static_mapping(std::uint32_t mapping) {
  MappingEntry& m = mappings_[mapping];
  if (!m.live || m.forward == kNoForward) return;
  const std::uint64_t key = static_key(m.protocol, m.internal_address, m.internal_port);
  auto it = statics_.find(key);
  if (it != statics_.end() && it->second == mapping) {
    statics_.erase(it);
    // Another forward to the same internal endpoint takes over its outbound flows (rare: scan).
    for (std::uint32_t i = 0; i < mappings_.size(); ++i) {
      const MappingEntry& o = mappings_[i];
      if (i != mapping && o.live && o.forward != kNoForward && o.protocol == m.protocol &&
          o.internal_address == m.internal_address && o.internal_port == m.internal_port) {
        statics_.emplace(key, i);
        break;
      }
    }
  }
  m.forward = kNoForward;  // not keyed either: only its own sessions still reach it
  for (SessionEntry& session : sessions_)
    if (session.live && session.mapping == mapping) session.forward = kNoForward;
  if (m.sessions == 0) free_mapping(mapping);
}

// ---- timers ----------------------------------------------------------------------------

void NatTable::file_timer(std::uint32_t session) {
  SessionEntry& s = sessions_[session];
  ++s.generation;
  timers_.push_back(Timer{s.expires, session, s.generation});
  std::push_heap(timers_.begin(), timers_.end(), TimerLater{});
  // Superseded entries wait for their time; keep them from outgrowing the live ones.
  if (timers_.size() > 2 * session_count_ + 1024) rebuild_timers();
}

void NatTable::rebuild_timers() {
  timers_.clear();
  for (std::uint32_t i = 0; i < sessions_.size(); ++i) {
    SessionEntry& s = sessions_[i];
    if (!s.live) continue;
    ++s.generation;
    timers_.push_back(Timer{s.expires, i, s.generation});
  }
  std::make_heap(timers_.begin(), timers_.end(), TimerLater{});
}

void NatTable::set_expiry(std::uint32_t session, Instant expires) {
  SessionEntry& s = sessions_[session];
  const bool earlier = expires < s.expires;
  s.expires = expires;
  if (earlier) file_timer(session);
}

std::size_t NatTable::expire(Instant now, std::size_t budget) {
  std::size_t removed = 0;
  while (!timers_.empty() && timers_.front().at <= now && budget > 0) {
    const Timer t = timers_.front();
    std::pop_heap(timers_.begin(), timers_.end(), TimerLater{});
    timers_.pop_back();
    SessionEntry& s = sessions_[t.session];
    if (!s.live || s.generation != t.generation) continue;  // superseded or gone
    --budget;
    if (s.expires > now) {
      file_timer(t.session);  // refreshed since filing: file it again at its real expiry
      continue;
    }
    remove_session(t.session);
    ++removed;
  }
  return removed;
}

std::size_t NatTable::memory_bytes() const {
  std::size_t bytes =
      mappings_.capacity() * sizeof(MappingEntry) + sessions_.capacity() * sizeof(SessionEntry) +
      (free_mappings_.capacity() + free_sessions_.capacity()) * 4 +
      timers_.capacity() * sizeof(Timer) + mapping_key_.memory_bytes() +
      mapping_ext_.memory_bytes() + session_out_.memory_bytes() + session_in_.memory_bytes();
  for (const PortSpace& p : port_spaces_) bytes += p.memory_bytes();
  // Node-based maps: roughly a node (key, value, next, hash) plus a bucket pointer each.
  bytes += (statics_.size() + address_refs_.size()) * 40;
  return bytes;
}

}  // namespace knit::nat
