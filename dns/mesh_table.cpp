#include "dns/mesh_table.hpp"

#include <algorithm>
#include <cctype>

#include "dns/constants.hpp"

namespace knit::dns {
namespace {

std::string lower(std::string_view text) {
  std::string out(text);
  std::transform(out.begin(), out.end(), out.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return out;
}

bool ends_with(const std::string& s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

std::vector<std::string> split_labels(std::string_view name) {
  std::vector<std::string> labels;
  std::size_t start = 0;
  while (start <= name.size()) {
    const std::size_t dot = name.find('.', start);
    const std::size_t end = dot == std::string_view::npos ? name.size() : dot;
    labels.emplace_back(name.substr(start, end - start));
    if (dot == std::string_view::npos) break;
    start = dot + 1;
  }
  return labels;
}

int parse_octet(const std::string& label) {
  if (label.empty() || label.size() > 3) return -1;
  int value = 0;
  for (char c : label) {
    if (c < '0' || c > '9') return -1;
    value = value * 10 + (c - '0');
  }
  if (value > 255 || (label.size() > 1 && label[0] == '0')) return -1;
  return value;
}

int parse_nibble(const std::string& label) {
  if (label.size() != 1) return -1;
  const char c = label[0];
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

}  // namespace

bool prefix_contains(const IpPrefix& prefix, const IpAddress& address) {
  if (prefix.address.family() != address.family()) return false;
  const unsigned bits = prefix.length;
  for (unsigned i = 0; i < address.size() && i * 8 < bits; ++i) {
    const unsigned take = std::min(8u, bits - i * 8);
    const std::uint8_t mask = static_cast<std::uint8_t>(0xff << (8 - take));
    if ((prefix.address.bytes()[i] & mask) != (address.bytes()[i] & mask)) return false;
  }
  return true;
}

std::optional<IpAddress> parse_reverse_name(const std::string& name) {
  if (ends_with(name, ".in-addr.arpa")) {
    const auto labels = split_labels(std::string_view(name).substr(0, name.size() - 13));
    if (labels.size() != 4) return std::nullopt;
    std::uint8_t bytes[4];
    for (int i = 0; i < 4; ++i) {
      const int v = parse_octet(labels[3 - i]);
      if (v < 0) return std::nullopt;
      bytes[i] = static_cast<std::uint8_t>(v);
    }
    return IpAddress::v4(bytes);
  }
  if (ends_with(name, ".ip6.arpa")) {
    const auto labels = split_labels(std::string_view(name).substr(0, name.size() - 9));
    if (labels.size() != 32) return std::nullopt;
    std::uint8_t bytes[16] = {};
    for (int i = 0; i < 32; ++i) {
      const int v = parse_nibble(labels[31 - i]);
      if (v < 0) return std::nullopt;
      bytes[i / 2] = static_cast<std::uint8_t>(bytes[i / 2] | (i % 2 == 0 ? v << 4 : v));
    }
    return IpAddress::v6(bytes);
  }
  return std::nullopt;
}

std::string reverse_name(const IpAddress& address) {
  std::string out;
  if (address.is_v4()) {
    for (int i = 3; i >= 0; --i) out += std::to_string(address.bytes()[i]) + ".";
    return out + "in-addr.arpa";
  }
  static constexpr char kHex[] = "0123456789abcdef";
  for (int i = 15; i >= 0; --i) {
    out += kHex[address.bytes()[i] & 0x0f];
    out += '.';
    out += kHex[address.bytes()[i] >> 4];
    out += '.';
  }
  return out + "ip6.arpa";
}

void MeshTable::set_domain(std::string_view domain) {
  domain_ = lower(domain);
  if (!domain_.empty() && domain_.back() == '.') domain_.pop_back();
}

void MeshTable::set_prefixes(std::optional<IpPrefix> v4, std::optional<IpPrefix> v6) {
  v4_prefix_ = v4;
  v6_prefix_ = v6;
}

void MeshTable::set_nodes(const std::vector<MeshNode>& nodes) {
  by_name_.clear();
  by_address_.clear();
  for (const MeshNode& node : nodes) {
    const std::string key = lower(node.name);
    if (key.empty() || key.find('.') != std::string::npos) continue;
    by_name_[key] = node;
    if (node.ipv4) by_address_[*node.ipv4] = key;
    if (node.ipv6) by_address_[*node.ipv6] = key;
  }
}

void MeshTable::update_nodes(const std::vector<MeshNode>& gone, const std::vector<MeshNode>& came) {
  for (const MeshNode& node : gone) {
    const std::string key = lower(node.name);
    const auto it = by_name_.find(key);
    if (it == by_name_.end() || it->second.ipv4 != node.ipv4 || it->second.ipv6 != node.ipv6) continue;
    by_name_.erase(it);
    for (const std::optional<IpAddress>& address : {node.ipv4, node.ipv6}) {
      if (!address) continue;
      const auto at = by_address_.find(*address);
      if (at != by_address_.end() && at->second == key) by_address_.erase(at);
    }
  }
  for (const MeshNode& node : came) {
    const std::string key = lower(node.name);
    if (key.empty() || key.find('.') != std::string::npos) continue;
    by_name_[key] = node;
    if (node.ipv4) by_address_[*node.ipv4] = key;
    if (node.ipv6) by_address_[*node.ipv6] = key;
  }
}

MeshTable::Lookup MeshTable::lookup_address(const IpAddress& address, const std::string& name,
                                            std::uint16_t qtype) const {
  const bool ours = (v4_prefix_ && prefix_contains(*v4_prefix_, address)) ||
                    (v6_prefix_ && prefix_contains(*v6_prefix_, address)) || by_address_.count(address);
  if (!ours) return {};
  const auto it = by_address_.find(address);
  if (it == by_address_.end()) return {Kind::nxdomain, {}};
  if (qtype != type::PTR && qtype != type::ANY) return {Kind::nodata, {}};
  return {Kind::answer, {Record{name, kMeshTtl, it->second + "." + domain_}}};
}

MeshTable::Lookup MeshTable::lookup(const std::string& name, std::uint16_t qtype) const {
  if (domain_.empty()) return {};
  if (auto address = parse_reverse_name(name)) return lookup_address(*address, name, qtype);
  if (name == domain_) return {Kind::nodata, {}};
  if (!ends_with(name, "." + domain_)) return {};
  const std::string label = name.substr(0, name.size() - domain_.size() - 1);
  const auto it = by_name_.find(label);
  if (it == by_name_.end()) return {Kind::nxdomain, {}};
  Lookup out{Kind::nodata, {}};
  const MeshNode& node = it->second;
  if ((qtype == type::A || qtype == type::ANY) && node.ipv4)
    out.answers.push_back(Record{name, kMeshTtl, *node.ipv4});
  if ((qtype == type::AAAA || qtype == type::ANY) && node.ipv6)
    out.answers.push_back(Record{name, kMeshTtl, *node.ipv6});
  if (!out.answers.empty()) out.kind = Kind::answer;
  return out;
}

std::optional<Bytes> MeshTable::answer(const Query& query) const {
  const Lookup found = lookup(query.name, query.qtype);
  if (found.kind == Kind::not_ours) return std::nullopt;
  // Only class IN has mesh names; another class of one of our names is refused, not forwarded.
  if (query.qclass != kClassIn && query.qclass != 255) return build_error(query, Rcode::refused);
  const bool reverse = query.name.ends_with(".arpa");
  const std::string zone = reverse ? std::string() : domain_;
  switch (found.kind) {
    case Kind::answer: return build_response(query, Rcode::noerror, found.answers, {}, true);
    case Kind::nodata: return build_response(query, Rcode::noerror, {}, zone, true);
    case Kind::nxdomain: return build_response(query, Rcode::nxdomain, {}, zone, true);
    case Kind::not_ours: break;
  }
  return std::nullopt;
}

}  // namespace knit::dns
