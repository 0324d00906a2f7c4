#include "policy/rule_set.hpp"

#include <sstream>

namespace knit::policy {
namespace {

std::uint32_t mask32(std::uint8_t length) { return length == 0 ? 0 : ~std::uint32_t{0} << (32 - length); }
std::uint64_t mask64(int length) {
  if (length <= 0) return 0;
  if (length >= 64) return ~std::uint64_t{0};
  return ~std::uint64_t{0} << (64 - length);
}
std::uint64_t load64(const std::uint8_t* b) {
  std::uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v = (v << 8) | b[i];
  return v;
}

}  // namespace

std::uint8_t protocol_bit(std::uint8_t ip_protocol) {
  switch (ip_protocol) {
    case 6: return kTcp;
    case 17: return kUdp;
    case 1:
    case 58: return kIcmp;
    default: return kOtherProtocols;
  }
}

bool prefix_contains(const IpPrefix& prefix, const IpAddress& address) {
  if (prefix.address.is_v4() != address.is_v4()) return false;
  const std::uint8_t* p = prefix.address.bytes();
  const std::uint8_t* a = address.bytes();
  for (std::size_t i = 0; i < prefix.length; ++i) {
    const std::uint8_t bit = static_cast<std::uint8_t>(0x80 >> (i % 8));
    if ((p[i / 8] & bit) != (a[i / 8] & bit)) return false;
  }
  return true;
}

bool prefixes_overlap(const IpPrefix& a, const IpPrefix& b) {
  return a.length <= b.length ? prefix_contains(a, b.address) : prefix_contains(b, a.address);
}

RuleSet::RuleSet(std::vector<CompiledRule> rules) : rules_(std::move(rules)) {
  for (const CompiledRule& r : rules_) {
    Flat f;
    f.protocols = r.protocols;
    f.all_ports = r.ports.size() == 1 && r.ports[0] == kAllPorts;
    const auto add = [&](const std::vector<IpPrefix>& list, std::uint32_t& b4, std::uint32_t& e4,
                         std::uint32_t& b6, std::uint32_t& e6) {
      b4 = static_cast<std::uint32_t>(v4_.size());
      for (const IpPrefix& p : list)
        if (p.address.is_v4()) v4_.push_back({p.address.v4_host_order() & mask32(p.length), mask32(p.length)});
      e4 = static_cast<std::uint32_t>(v4_.size());
      b6 = static_cast<std::uint32_t>(v6_.size());
      for (const IpPrefix& p : list) {
        if (!p.address.is_v6()) continue;
        const std::uint64_t mh = mask64(p.length), ml = mask64(p.length - 64);
        v6_.push_back({load64(p.address.bytes()) & mh, load64(p.address.bytes() + 8) & ml, mh, ml});
      }
      e6 = static_cast<std::uint32_t>(v6_.size());
    };
    add(r.src, f.src4, f.src4_end, f.src6, f.src6_end);
    add(r.dst, f.dst4, f.dst4_end, f.dst6, f.dst6_end);
    f.ports = static_cast<std::uint32_t>(ports_.size());
    ports_.insert(ports_.end(), r.ports.begin(), r.ports.end());
    f.ports_end = static_cast<std::uint32_t>(ports_.size());
    const auto index = static_cast<std::uint32_t>(flat_.size());
    std::uint32_t span = 0;
    for (const PortRange& p : r.ports) span += static_cast<std::uint32_t>(p.last - p.first) + 1;
    if (f.all_ports || span > kIndexedRange) {
      wide_.push_back(index);
    } else {
      for (const PortRange& p : r.ports)
        for (std::uint32_t port = p.first; port <= p.last; ++port) {
          auto& list = by_port_[static_cast<std::uint16_t>(port)];
          if (list.empty() || list.back() != index) list.push_back(index);
        }
    }
    flat_.push_back(f);
  }
}

bool RuleSet::matches(const Flat& f, bool v4, std::uint32_t s4, std::uint32_t d4, std::uint64_t sh, std::uint64_t sl,
                      std::uint64_t dh, std::uint64_t dl) const {
  const auto in4 = [&](std::uint32_t b, std::uint32_t e, std::uint32_t a) {
    for (; b < e; ++b)
      if ((a & v4_[b].mask) == v4_[b].net) return true;
    return false;
  };
  const auto in6 = [&](std::uint32_t b, std::uint32_t e, std::uint64_t h, std::uint64_t l) {
    for (; b < e; ++b)
      if ((h & v6_[b].mask_hi) == v6_[b].hi && (l & v6_[b].mask_lo) == v6_[b].lo) return true;
    return false;
  };
  if (v4 ? !in4(f.dst4, f.dst4_end, d4) : !in6(f.dst6, f.dst6_end, dh, dl)) return false;
  return v4 ? in4(f.src4, f.src4_end, s4) : in6(f.src6, f.src6_end, sh, sl);
}

std::optional<std::size_t> RuleSet::match(const FlowKey& flow) const {
  const std::uint8_t bit = protocol_bit(flow.ip_protocol);
  const bool has_ports = bit == kTcp || bit == kUdp;
  if (flow.src.is_v4() != flow.dst.is_v4()) return std::nullopt;
  const bool v4 = flow.src.is_v4();
  std::uint32_t s4 = 0, d4 = 0;
  std::uint64_t sh = 0, sl = 0, dh = 0, dl = 0;
  if (v4) {
    s4 = flow.src.v4_host_order();
    d4 = flow.dst.v4_host_order();
  } else {
    sh = load64(flow.src.bytes()), sl = load64(flow.src.bytes() + 8);
    dh = load64(flow.dst.bytes()), dl = load64(flow.dst.bytes() + 8);
  }
  const auto try_rule = [&](std::uint32_t i) -> bool {
    const Flat& f = flat_[i];
    if (!(f.protocols & bit)) return false;
    if (!f.all_ports) {
      if (!has_ports) return false;
      bool port_ok = false;
      for (std::uint32_t p = f.ports; p < f.ports_end && !port_ok; ++p)
        port_ok = flow.dst_port >= ports_[p].first && flow.dst_port <= ports_[p].last;
      if (!port_ok) return false;
    }
    return matches(f, v4, s4, d4, sh, sl, dh, dl);
  };
  // The rules naming this port and the wide ones, merged in rule order.
  static const std::vector<std::uint32_t> kNone;
  const std::vector<std::uint32_t>* named = &kNone;
  if (has_ports)
    if (auto it = by_port_.find(flow.dst_port); it != by_port_.end()) named = &it->second;
  std::size_t a = 0, b = 0;
  while (a < named->size() || b < wide_.size()) {
    const bool take_named = b == wide_.size() || (a < named->size() && (*named)[a] < wide_[b]);
    const std::uint32_t i = take_named ? (*named)[a++] : wide_[b++];
    if (try_rule(i)) return i;
  }
  return std::nullopt;
}

std::size_t RuleSet::prefix_count() const { return v4_.size() + v6_.size(); }

std::string RuleSet::describe() const {
  std::ostringstream out;
  for (const CompiledRule& r : rules_) {
    out << r.name << ": accept " << protocols_name(r.protocols) << " from";
    for (const IpPrefix& p : r.src) out << ' ' << p.to_string();
    out << " to";
    for (const IpPrefix& p : r.dst) out << ' ' << p.to_string();
    out << " ports ";
    for (std::size_t i = 0; i < r.ports.size(); ++i) {
      if (i) out << ',';
      if (r.ports[i] == kAllPorts) out << '*';
      else if (r.ports[i].first == r.ports[i].last) out << r.ports[i].first;
      else out << r.ports[i].first << '-' << r.ports[i].last;
    }
    out << '\n';
  }
  return out.str();
}

}  // namespace knit::policy
