// Peer pages and deltas to bytes and back (format in peer_codec.hpp). Every byte parsed here came
// from the network: each length is checked against what is left before it is used, and the
// first problem is reported with where it was, as the JSON parser does.
#include "control/peer_codec.hpp"

#include <algorithm>
#include <cstring>
#include <limits>
#include <optional>
#include <utility>

#include "base/bytes.hpp"
#include "control/constants.hpp"

namespace knit::control {
namespace {

constexpr std::uint8_t kOnline = 0x01;
constexpr std::uint8_t kV6FromBase = 0x02;
constexpr std::uint8_t kKnownFlags = kOnline | kV6FromBase;

void put_u8(std::string& out, std::uint8_t v) { out.push_back(static_cast<char>(v)); }

void put_varint(std::string& out, std::uint64_t v) {
  while (v >= 0x80) {
    put_u8(out, static_cast<std::uint8_t>(v | 0x80));
    v >>= 7;
  }
  put_u8(out, static_cast<std::uint8_t>(v));
}

void put_bytes(std::string& out, const std::uint8_t* p, std::size_t n) {
  out.append(reinterpret_cast<const char*>(p), n);
}

// Names, tags and relay names are at most 63 bytes (validated before they are stored); a
// longer string is cut rather than written with a wrong length.
void put_str(std::string& out, std::string_view s) {
  const std::size_t n = std::min<std::size_t>(s.size(), 255);
  put_u8(out, static_cast<std::uint8_t>(n));
  out.append(s.data(), n);
}

void put_address(std::string& out, const IpAddress& a) {
  put_u8(out, a.is_v4() ? 4 : 6);
  put_bytes(out, a.bytes(), a.size());
}

bool from_base(const PeerInfo& peer, const V6Base& base) {
  return peer.ipv4.is_v4() && peer.ipv6.is_v6() &&
         std::equal(base.begin(), base.end(), peer.ipv6.bytes()) &&
         std::memcmp(peer.ipv6.bytes() + 12, peer.ipv4.bytes(), 4) == 0;
}

// ---- reading ----

// Where in the message a value sits: "added[3].endpoints[1]". Made into text only when
// something is wrong there (building it for every field would cost more than the parse).
struct Where {
  static constexpr std::size_t kNone = ~std::size_t{0};
  const char* list = nullptr;  // "peers", "added", ... or a top-level field
  std::size_t index = kNone;
  const char* field = nullptr;
  std::size_t sub = kNone;

  Where(const char* top) : list(top) {}  // NOLINT: implicit from a field name
  Where(const char* l, std::size_t i, const char* f = nullptr, std::size_t s = kNone)
      : list(l), index(i), field(f), sub(s) {}
  Where at(const char* f, std::size_t s = kNone) const { return Where(list, index, f, s); }
  std::string str() const {
    std::string out = list != nullptr ? list : "";
    if (index != kNone) out += "[" + std::to_string(index) + "]";
    if (field != nullptr) out += std::string(".") + field;
    if (sub != kNone) out += "[" + std::to_string(sub) + "]";
    return out;
  }
};

class Reader {
 public:
  explicit Reader(std::string_view text)
      : p_(reinterpret_cast<const std::uint8_t*>(text.data())), end_(p_ + text.size()) {}

  bool fail(MessageError kind, const Where& where) {
    if (!error_) error_ = ParseError{kind, where.str()};
    return false;
  }
  ParseError error() const { return error_.value_or(ParseError{MessageError::bad_value, {}}); }
  bool done() const { return p_ == end_; }

  bool u8(std::uint8_t& v, const Where& at) {
    if (p_ == end_) return fail(MessageError::missing_field, at);
    v = *p_++;
    return true;
  }
  bool varint(std::uint64_t& v, const Where& at) {
    v = 0;
    for (int shift = 0; shift < 70; shift += 7) {
      if (p_ == end_) return fail(MessageError::missing_field, at);
      const std::uint8_t b = *p_++;
      if (shift == 63 && b > 1) return fail(MessageError::bad_value, at);  // over 64 bits
      v |= std::uint64_t{b & 0x7fu} << shift;
      if ((b & 0x80) == 0) {
        if (b == 0 && shift > 0) return fail(MessageError::bad_value, at);  // one spelling only
        return true;
      }
    }
    return fail(MessageError::bad_value, at);
  }
  // A count of entries, each at least min_size bytes: more than could be in what is left is
  // refused before anything is reserved for them.
  bool count(std::size_t& n, std::size_t max, std::size_t min_size, const Where& at) {
    std::uint64_t v = 0;
    if (!varint(v, at)) return false;
    if (v > max) return fail(MessageError::too_many, at);
    if (v * min_size > left()) return fail(MessageError::missing_field, at);
    n = static_cast<std::size_t>(v);
    return true;
  }
  bool bytes(std::uint8_t* out, std::size_t n, const Where& at) {
    if (left() < n) return fail(MessageError::missing_field, at);
    std::memcpy(out, p_, n);
    p_ += n;
    return true;
  }
  bool str(std::string& out, const Where& at) {
    std::uint8_t n = 0;
    if (!u8(n, at)) return false;
    if (left() < n) return fail(MessageError::missing_field, at);
    out.assign(reinterpret_cast<const char*>(p_), n);
    p_ += n;
    return true;
  }
  std::size_t left() const { return static_cast<std::size_t>(end_ - p_); }

 private:
  const std::uint8_t* p_;
  const std::uint8_t* end_;
  std::optional<ParseError> error_;
};

bool name_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
         c == '_';
}
bool valid_name(std::string_view s) {
  return !s.empty() && s.size() <= kMaxNameLength && std::all_of(s.begin(), s.end(), name_char);
}
bool valid_tag(std::string_view s) {
  return !s.empty() && s.size() <= kMaxNameLength &&
         std::all_of(s.begin(), s.end(), [](char c) { return name_char(c) || c == ':' || c == '.'; });
}

bool read_key(Reader& r, NodeKey& key, const Where& at) {
  if (!r.bytes(key.data(), key.size(), at)) return false;
  if (std::all_of(key.begin(), key.end(), [](std::uint8_t b) { return b == 0; }))
    return r.fail(MessageError::bad_value, at);
  return true;
}

bool read_address(Reader& r, IpAddress& out, const Where& at) {
  std::uint8_t family = 0;
  if (!r.u8(family, at)) return false;
  std::array<std::uint8_t, 16> b{};
  if (family == 4) {
    if (!r.bytes(b.data(), 4, at)) return false;
    out = IpAddress::v4(b.data());
  } else if (family == 6) {
    if (!r.bytes(b.data(), 16, at)) return false;
    out = IpAddress::v6(b.data());
  } else {
    return r.fail(MessageError::bad_value, at);
  }
  return true;
}

bool host_bits_zero(const IpPrefix& prefix) {
  const std::size_t bits = prefix.address.size() * 8;
  for (std::size_t bit = prefix.length; bit < bits; ++bit)
    if ((prefix.address.bytes()[bit / 8] >> (7 - bit % 8)) & 1) return false;
  return true;
}

// The smallest peer entry: flags, empty name, two keys, ipv4, a varint, empty relay, three
// empty lists.
constexpr std::size_t kMinPeerSize = 1 + 1 + 32 + 32 + 4 + 1 + 1 + 1 + 1 + 1;

bool read_peer(Reader& r, const V6Base& base, PeerInfo& out, const Where& at) {
  std::uint8_t flags = 0;
  if (!r.u8(flags, at.at("flags"))) return false;
  if ((flags & ~kKnownFlags) != 0) return r.fail(MessageError::bad_value, at.at("flags"));
  out.online = (flags & kOnline) != 0;
  if (!r.str(out.name, at.at("name"))) return false;
  if (!valid_name(out.name)) return r.fail(MessageError::bad_value, at.at("name"));
  if (!read_key(r, out.node_key, at.at("node_key")) ||
      !read_key(r, out.disco_key, at.at("disco_key")))
    return false;
  std::array<std::uint8_t, 16> b{};
  if (!r.bytes(b.data(), 4, at.at("ipv4"))) return false;
  out.ipv4 = IpAddress::v4(b.data());
  if ((flags & kV6FromBase) != 0) {
    std::copy(base.begin(), base.end(), b.begin());
    std::memcpy(b.data() + 12, out.ipv4.bytes(), 4);
  } else if (!r.bytes(b.data(), 16, at.at("ipv6"))) {
    return false;
  }
  out.ipv6 = IpAddress::v6(b.data());
  std::uint64_t last_seen = 0;
  if (!r.varint(last_seen, at.at("last_seen"))) return false;
  if (last_seen > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max()))
    return r.fail(MessageError::bad_value, at.at("last_seen"));
  out.last_seen = static_cast<std::int64_t>(last_seen);
  if (!r.str(out.home_relay, at.at("home_relay"))) return false;
  if (!out.home_relay.empty() && !valid_name(out.home_relay))
    return r.fail(MessageError::bad_value, at.at("home_relay"));

  std::size_t n = 0;
  if (!r.count(n, kMaxEndpoints, 7, at.at("endpoints"))) return false;
  out.endpoints.clear();
  out.endpoints.reserve(n);
  for (std::size_t i = 0; i < n; ++i) {
    const Where e_at = at.at("endpoints", i);
    IpAddress address;
    std::uint8_t port[2];
    if (!read_address(r, address, e_at) || !r.bytes(port, 2, e_at)) return false;
    const std::uint16_t p = load_be16(port);
    if (p == 0 || address.is_unspecified()) return r.fail(MessageError::bad_value, e_at);
    out.endpoints.emplace_back(address, p);
  }
  if (!r.count(n, kMaxTags, 2, at.at("tags"))) return false;
  out.tags.clear();
  out.tags.reserve(n);
  for (std::size_t i = 0; i < n; ++i) {
    if (!r.str(out.tags.emplace_back(), at.at("tags", i))) return false;
    if (!valid_tag(out.tags.back())) return r.fail(MessageError::bad_value, at.at("tags", i));
  }
  if (!r.count(n, kMaxRoutes, 6, at.at("routes"))) return false;
  out.routes.clear();
  out.routes.reserve(n);
  for (std::size_t i = 0; i < n; ++i) {
    const Where p_at = at.at("routes", i);
    std::uint8_t family = 0;
    std::uint8_t length = 0;
    if (!r.u8(family, p_at) || !r.u8(length, p_at)) return false;
    IpPrefix prefix;
    prefix.length = length;
    if (family == 4 || family == 6) {
      std::array<std::uint8_t, 16> a{};
      if (!r.bytes(a.data(), family == 4 ? 4 : 16, p_at)) return false;
      prefix.address = family == 4 ? IpAddress::v4(a.data()) : IpAddress::v6(a.data());
    } else {
      return r.fail(MessageError::bad_value, p_at);
    }
    if (length > prefix.address.size() * 8 || !host_bits_zero(prefix))
      return r.fail(MessageError::bad_value, p_at);
    out.routes.push_back(prefix);
  }
  return true;
}

bool read_peers(Reader& r, const V6Base& base, std::vector<PeerInfo>& out, const char* list) {
  std::size_t n = 0;
  if (!r.count(n, kMaxPeersPerMessage, kMinPeerSize, list)) return false;
  out.clear();
  out.reserve(n);
  for (std::size_t i = 0; i < n; ++i)
    if (!read_peer(r, base, out.emplace_back(), Where(list, i))) return false;
  return true;
}

// Sorts the keys' first 8 bytes as integers, which costs a fraction of sorting 32-byte keys
// with memcmp (every agent checks every page and delta: at 10,000 joins that sort was a tenth
// of a simulated agent's CPU); only keys whose first 8 bytes tie are compared whole. Random
// keys never tie; a hostile message of ties costs what the whole-key sort did.
bool keys_unique(std::vector<NodeKey> keys) {
  std::vector<std::pair<std::uint64_t, std::uint32_t>> order(keys.size());
  for (std::size_t i = 0; i < keys.size(); ++i) {
    std::uint64_t prefix = 0;
    std::memcpy(&prefix, keys[i].data(), sizeof prefix);
    order[i] = {prefix, static_cast<std::uint32_t>(i)};
  }
  std::sort(order.begin(), order.end());
  std::vector<NodeKey> run;
  for (std::size_t i = 1; i < order.size();) {
    if (order[i].first != order[i - 1].first) {
      ++i;
      continue;
    }
    std::size_t end = i + 1;
    while (end < order.size() && order[end].first == order[i].first) ++end;
    run.clear();
    for (std::size_t j = i - 1; j < end; ++j) run.push_back(keys[order[j].second]);
    std::sort(run.begin(), run.end());
    if (std::adjacent_find(run.begin(), run.end()) != run.end()) return false;
    i = end;
  }
  return true;
}

}  // namespace

V6Base v6_base_of(const std::vector<PeerInfo>& peers) {
  V6Base base{};
  for (const PeerInfo& peer : peers) {
    if (!peer.ipv6.is_v6()) continue;
    std::copy(peer.ipv6.bytes(), peer.ipv6.bytes() + base.size(), base.begin());
    break;
  }
  return base;
}

void append_peer(std::string& out, const PeerInfo& peer, const V6Base& base) {
  const bool derived = from_base(peer, base);
  put_u8(out, static_cast<std::uint8_t>((peer.online ? kOnline : 0) | (derived ? kV6FromBase : 0)));
  put_str(out, peer.name);
  put_bytes(out, peer.node_key.data(), peer.node_key.size());
  put_bytes(out, peer.disco_key.data(), peer.disco_key.size());
  std::uint8_t v4[4] = {};
  if (peer.ipv4.is_v4()) std::memcpy(v4, peer.ipv4.bytes(), 4);
  put_bytes(out, v4, 4);
  if (!derived) {
    std::uint8_t v6[16] = {};
    if (peer.ipv6.is_v6()) std::memcpy(v6, peer.ipv6.bytes(), 16);
    put_bytes(out, v6, 16);
  }
  put_varint(out, static_cast<std::uint64_t>(std::max<std::int64_t>(peer.last_seen, 0)));
  put_str(out, peer.home_relay);
  const std::size_t endpoints = std::min(peer.endpoints.size(), kMaxEndpoints);
  put_u8(out, static_cast<std::uint8_t>(endpoints));
  for (std::size_t i = 0; i < endpoints; ++i) {
    put_address(out, peer.endpoints[i].address());
    std::uint8_t port[2];
    store_be16(port, peer.endpoints[i].port());
    put_bytes(out, port, 2);
  }
  const std::size_t tags = std::min(peer.tags.size(), kMaxTags);
  put_u8(out, static_cast<std::uint8_t>(tags));
  for (std::size_t i = 0; i < tags; ++i) put_str(out, peer.tags[i]);
  const std::size_t routes = std::min(peer.routes.size(), kMaxRoutes);
  put_varint(out, routes);
  for (std::size_t i = 0; i < routes; ++i) {
    const IpPrefix& route = peer.routes[i];
    put_u8(out, route.address.is_v4() ? 4 : 6);
    put_u8(out, static_cast<std::uint8_t>(route.length));
    put_bytes(out, route.address.bytes(), route.address.size());
  }
}

std::string page_header(std::uint64_t version, std::uint64_t index, std::uint64_t count,
                        const V6Base& base, std::size_t peers) {
  std::string out;
  put_u8(out, kBinaryTag);
  put_u8(out, kKindMapPage);
  put_varint(out, version);
  put_varint(out, index);
  put_varint(out, count);
  put_bytes(out, base.data(), base.size());
  put_varint(out, peers);
  return out;
}

std::string delta_header(std::uint64_t version, const V6Base& base) {
  std::string out;
  put_u8(out, kBinaryTag);
  put_u8(out, kKindDelta);
  put_varint(out, version);
  put_bytes(out, base.data(), base.size());
  return out;
}

void append_count(std::string& out, std::size_t n) { put_varint(out, n); }

void append_key(std::string& out, const NodeKey& key) {
  put_bytes(out, key.data(), key.size());
}

std::string encode(const PeerMapPage& page) {
  const V6Base base = v6_base_of(page.peers);
  std::string out = page_header(page.version, page.index, page.count, base, page.peers.size());
  for (const PeerInfo& peer : page.peers) append_peer(out, peer, base);
  return out;
}

std::string encode(const PeerDelta& delta) {
  std::vector<PeerInfo> all(delta.added);
  all.insert(all.end(), delta.changed.begin(), delta.changed.end());
  const V6Base base = v6_base_of(all);
  std::string out = delta_header(delta.version, base);
  append_count(out, delta.added.size());
  for (const PeerInfo& peer : delta.added) append_peer(out, peer, base);
  append_count(out, delta.changed.size());
  for (const PeerInfo& peer : delta.changed) append_peer(out, peer, base);
  append_count(out, delta.removed.size());
  for (const NodeKey& key : delta.removed) append_key(out, key);
  return out;
}

std::vector<std::string> encode_pages(const PeerMap& map, std::size_t max_peers,
                                      std::size_t max_bytes) {
  const V6Base base = v6_base_of(map.peers);
  // Entries first, then cut: a page's header says how many pages there are.
  std::vector<std::string> entries;
  entries.reserve(map.peers.size());
  for (const PeerInfo& peer : map.peers) append_peer(entries.emplace_back(), peer, base);
  std::vector<std::pair<std::size_t, std::size_t>> cuts;  // [begin, end) of each page
  std::size_t begin = 0;
  while (begin < entries.size() || cuts.empty()) {
    std::size_t end = begin;
    std::size_t bytes = 0;
    while (end < entries.size() && end - begin < max_peers &&
           (end == begin || bytes + entries[end].size() <= max_bytes))
      bytes += entries[end++].size();
    cuts.emplace_back(begin, end);
    begin = end;
  }
  std::vector<std::string> pages;
  pages.reserve(cuts.size());
  for (std::size_t i = 0; i < cuts.size(); ++i) {
    const auto [b, e] = cuts[i];
    std::string page = page_header(map.version, i, cuts.size(), base, e - b);
    for (std::size_t k = b; k < e; ++k) page += entries[k];
    pages.push_back(std::move(page));
  }
  return pages;
}

ParseResult parse_binary(std::string_view text) {
  if (text.size() > kMaxPeerMessageBytes) return ParseError{MessageError::too_large, {}};
  Reader r(text);
  std::uint8_t tag = 0;
  std::uint8_t kind = 0;
  if (!r.u8(tag, "type") || tag != kBinaryTag || !r.u8(kind, "type"))
    return ParseError{MessageError::unknown_type, "type"};
  V6Base base{};
  if (kind == kKindMapPage) {
    PeerMapPage page;
    std::uint64_t index = 0;
    std::uint64_t count = 0;
    if (!r.varint(page.version, "version") || !r.varint(index, "index") ||
        !r.varint(count, "count") || !r.bytes(base.data(), base.size(), "v6base"))
      return r.error();
    // A map of kMaxPeers peers needs no more pages than that.
    if (count == 0 || count > kMaxPeers) return ParseError{MessageError::bad_value, "count"};
    if (index >= count) return ParseError{MessageError::bad_value, "index"};
    page.index = static_cast<std::uint32_t>(index);
    page.count = static_cast<std::uint32_t>(count);
    if (!read_peers(r, base, page.peers, "peers")) return r.error();
    if (!r.done()) return ParseError{MessageError::bad_value, "peers"};  // trailing bytes
    std::vector<NodeKey> keys;
    keys.reserve(page.peers.size());
    for (const PeerInfo& p : page.peers) keys.push_back(p.node_key);
    if (!keys_unique(std::move(keys))) return ParseError{MessageError::duplicate, "peers"};
    return page;
  }
  if (kind == kKindPolicy) {
    PolicyRules policy;
    std::uint8_t flags = 0;
    if (!r.u8(flags, "flags")) return r.error();
    if (flags > 1) return ParseError{MessageError::bad_value, "flags"};
    policy.in_force = flags == 1;
    policy.rules = std::string(text.substr(3));
    if (!policy.in_force && !policy.rules.empty()) return ParseError{MessageError::bad_value, "rules"};
    return policy;
  }
  if (kind == kKindDelta) {
    PeerDelta delta;
    if (!r.varint(delta.version, "version") || !r.bytes(base.data(), base.size(), "v6base") ||
        !read_peers(r, base, delta.added, "added") ||
        !read_peers(r, base, delta.changed, "changed"))
      return r.error();
    std::size_t n = 0;
    if (!r.count(n, kMaxPeersPerMessage, 32, "removed")) return r.error();
    delta.removed.resize(n);
    for (std::size_t i = 0; i < n; ++i)
      if (!read_key(r, delta.removed[i], Where("removed", i))) return r.error();
    if (!r.done()) return ParseError{MessageError::bad_value, "removed"};
    if (delta.added.size() + delta.changed.size() + delta.removed.size() > kMaxPeersPerMessage)
      return ParseError{MessageError::too_many, {}};
    std::vector<NodeKey> keys(delta.removed);
    for (const PeerInfo& p : delta.added) keys.push_back(p.node_key);
    for (const PeerInfo& p : delta.changed) keys.push_back(p.node_key);
    if (!keys_unique(std::move(keys))) return ParseError{MessageError::duplicate, {}};
    return delta;
  }
  return ParseError{MessageError::unknown_type, "type"};
}

std::string encode(const PolicyRules& message) {
  std::string out;
  out.push_back(static_cast<char>(kBinaryTag));
  out.push_back(static_cast<char>(kKindPolicy));
  out.push_back(message.in_force ? 1 : 0);
  if (message.in_force) out += message.rules;
  return out;
}

}  // namespace knit::control
