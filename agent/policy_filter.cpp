#include "agent/policy_filter.hpp"

#include <cstring>
#include <sstream>

#include "policy/wire.hpp"

namespace knit::agent {
namespace {

constexpr std::uint8_t kTcp = 6, kUdp = 17, kIcmp = 1, kIcmp6 = 58;

std::uint16_t be16(const std::uint8_t* p) { return static_cast<std::uint16_t>(p[0] << 8 | p[1]); }

bool is_icmp_error(std::uint8_t protocol, std::uint8_t type) {
  if (protocol == kIcmp) return type == 3 || type == 11 || type == 12;
  return protocol == kIcmp6 && type >= 1 && type <= 4;
}
bool is_echo_request(std::uint8_t protocol, std::uint8_t type) {
  return (protocol == kIcmp && type == 8) || (protocol == kIcmp6 && type == 128);
}

// Ports (or the echo identifier) of a transport header at l4 with `size` bytes.
void transport(std::uint8_t protocol, const std::uint8_t* l4, std::size_t size, std::uint16_t& sport,
               std::uint16_t& dport) {
  sport = dport = 0;
  if ((protocol == kTcp || protocol == kUdp) && size >= 4) {
    sport = be16(l4);
    dport = be16(l4 + 2);
  } else if ((protocol == kIcmp || protocol == kIcmp6) && size >= 6 && is_echo_request(protocol, l4[0])) {
    sport = be16(l4 + 4);
  }
}

// The IP header at p: addresses into key, the transport's offset and protocol. false: malformed.
// fragment: a non-first fragment.
bool ip_header(const std::uint8_t* p, std::size_t size, bool& v4, std::array<std::uint8_t, 16>& src,
               std::array<std::uint8_t, 16>& dst, std::uint8_t& protocol, std::size_t& l4, bool& fragment) {
  fragment = false;
  if (size < 1) return false;
  src.fill(0);
  dst.fill(0);
  if ((p[0] >> 4) == 4) {
    v4 = true;
    const std::size_t ihl = std::size_t{p[0] & 0x0fu} * 4;
    if (size < 20 || ihl < 20 || ihl > size) return false;
    std::memcpy(src.data(), p + 12, 4);
    std::memcpy(dst.data(), p + 16, 4);
    protocol = p[9];
    fragment = (be16(p + 6) & 0x1fff) != 0;
    l4 = ihl;
    return true;
  }
  if ((p[0] >> 4) != 6 || size < 40) return false;
  v4 = false;
  std::memcpy(src.data(), p + 8, 16);
  std::memcpy(dst.data(), p + 24, 16);
  protocol = p[6];
  l4 = 40;
  for (int i = 0; i < 8; ++i) {  // extension headers (RFC 8200 §4), at most 8
    if (protocol == 0 || protocol == 43 || protocol == 60 || protocol == 51) {
      if (size < l4 + 8) return false;
      const std::size_t length = protocol == 51 ? (std::size_t{p[l4 + 1]} + 2) * 4 : (std::size_t{p[l4 + 1]} + 1) * 8;
      protocol = p[l4];
      l4 += length;
    } else if (protocol == 44) {
      if (size < l4 + 8) return false;
      fragment = (be16(p + l4 + 2) >> 3) != 0;
      protocol = p[l4];
      l4 += 8;
    } else {
      break;
    }
  }
  return l4 <= size;
}

}  // namespace

std::size_t PolicyFilter::FlowHash::operator()(const FlowKey& k) const {
  std::uint64_t h = 1469598103934665603ull;
  const auto mix = [&](const std::uint8_t* p, std::size_t n) {
    for (std::size_t i = 0; i < n; ++i) h = (h ^ p[i]) * 1099511628211ull;
  };
  const std::size_t n = k.v4 ? 4 : 16;
  mix(k.src.data(), n);
  mix(k.dst.data(), n);
  const std::uint8_t tail[5] = {static_cast<std::uint8_t>(k.src_port >> 8), static_cast<std::uint8_t>(k.src_port),
                                static_cast<std::uint8_t>(k.dst_port >> 8), static_cast<std::uint8_t>(k.dst_port), k.protocol};
  mix(tail, sizeof tail);
  return static_cast<std::size_t>(h);
}

PolicyFilter::Parsed PolicyFilter::parse(ByteSpan packet, FlowKey& key, FlowKey& quoted) {
  std::size_t l4 = 0;
  bool fragment = false;
  if (!ip_header(packet.data(), packet.size(), key.v4, key.src, key.dst, key.protocol, l4, fragment))
    return Parsed::malformed;
  if (fragment) return Parsed::fragment;
  const std::uint8_t* t = packet.data() + l4;
  const std::size_t t_size = packet.size() - l4;
  transport(key.protocol, t, t_size, key.src_port, key.dst_port);
  if ((key.protocol == kIcmp || key.protocol == kIcmp6) && t_size >= 8 && is_icmp_error(key.protocol, t[0])) {
    // The quoted packet went from this host to the peer: key it as the flow's inbound packets.
    FlowKey inner;
    std::size_t inner_l4 = 0;
    bool inner_fragment = false;
    if (!ip_header(t + 8, t_size - 8, inner.v4, inner.src, inner.dst, inner.protocol, inner_l4, inner_fragment) ||
        inner.v4 != key.v4)
      return Parsed::flow;  // matched as what it is, an ICMP packet
    std::uint16_t sport = 0, dport = 0;
    if (inner_l4 < t_size - 8) transport(inner.protocol, t + 8 + inner_l4, t_size - 8 - inner_l4, sport, dport);
    quoted.v4 = inner.v4;
    quoted.src = inner.dst;
    quoted.dst = inner.src;
    quoted.protocol = inner.protocol;
    quoted.src_port = dport;
    quoted.dst_port = sport;
    return Parsed::icmp_error;
  }
  return Parsed::flow;
}

policy::FlowKey PolicyFilter::match_key(const FlowKey& key) {
  policy::FlowKey f;
  if (key.v4) {
    f.src = IpAddress::v4(key.src.data());
    f.dst = IpAddress::v4(key.dst.data());
  } else {
    f.src = IpAddress::v6(key.src.data());
    f.dst = IpAddress::v6(key.dst.data());
  }
  f.ip_protocol = key.protocol;
  f.dst_port = (key.protocol == kTcp || key.protocol == kUdp) ? key.dst_port : 0;
  return f;
}

std::optional<std::size_t> PolicyFilter::match(const FlowKey& key) const {
  return rules_ ? rules_->match(match_key(key)) : std::nullopt;
}

bool PolicyFilter::apply(const control::PolicyRules& pushed, std::string* why) {
  if (!pushed.in_force) {
    apply(std::nullopt, version_);
    return true;
  }
  std::uint64_t version = 0;
  policy::RuleSet rules;
  const policy::WireError e = policy::decode_rules(pushed.rules, version, rules);
  if (e != policy::WireError::none) {
    ++rejected_;
    if (why) *why = std::string("malformed policy rules: ") + policy::to_string(e);
    return false;
  }
  apply(std::move(rules), version);
  return true;
}

void PolicyFilter::apply(std::optional<policy::RuleSet> rules, std::uint64_t version) {
  rules_ = std::move(rules);
  version_ = version;
  per_rule_.clear();
  if (!rules_) {
    flows_.clear();
    lan_opened_.clear();
    return;
  }
  for (const policy::CompiledRule& r : rules_->rules()) per_rule_.push_back({r.name, 0, 0});
  // Every remembered flow, asked again: the new rules apply to established flows too.
  for (auto& [key, flow] : flows_) {
    const auto m = match(key);
    if (!m) {
      if (!flow.cut) ++cut_;
      flow.cut = true;
    } else {
      flow.cut = false;
      flow.rule = static_cast<std::uint32_t>(*m);
    }
  }
}

void PolicyFilter::routed_outbound(Instant now, ByteSpan packet) {
  if (!rules_) return;
  FlowKey key, quoted;
  if (parse(packet, key, quoted) != Parsed::flow) return;
  // Keyed as the replies come in: the other way round. An echo reply carries no identifier in
  // the key (transport() reads it from requests only), so ICMP is keyed by addresses alone.
  FlowKey reply = key;
  std::swap(reply.src, reply.dst);
  std::swap(reply.src_port, reply.dst_port);
  if (key.protocol == kIcmp || key.protocol == kIcmp6) reply.src_port = reply.dst_port = 0;
  if (auto it = lan_opened_.find(reply); it != lan_opened_.end()) it->second = now;
  else if (lan_opened_.size() < kMaxFlows) lan_opened_.emplace(reply, now);
}

PolicyFilter::Verdict PolicyFilter::unsolicited(Instant now, ByteSpan packet) {
  if (!rules_) return Verdict::pass;
  FlowKey key, quoted;
  switch (parse(packet, key, quoted)) {
    case Parsed::malformed: ++denied_; return Verdict::drop;
    case Parsed::fragment: return Verdict::pass;
    case Parsed::icmp_error:
      if (auto it = flows_.find(quoted); it != flows_.end() && !it->second.cut) {
        it->second.last_seen = now;
        return Verdict::pass;
      }
      if (auto it = lan_opened_.find(quoted); it != lan_opened_.end()) {
        it->second = now;
        return Verdict::pass;
      }
      break;
    case Parsed::flow: break;
  }
  if (!lan_opened_.empty()) {
    if (auto it = lan_opened_.find(key); it != lan_opened_.end()) {
      it->second = now;  // a reply to a LAN host's own flow
      return Verdict::pass;
    }
  }
  if (auto it = flows_.find(key); it != flows_.end()) {
    if (it->second.cut) {
      ++denied_;
      return Verdict::drop;
    }
    it->second.last_seen = now;
    ++per_rule_[it->second.rule].accepted_packets;
    return Verdict::pass;
  }
  const auto m = match(key);
  if (!m) {
    ++denied_;
    return Verdict::drop;
  }
  PolicyRuleCounters& c = per_rule_[*m];
  ++c.accepted_flows;
  ++c.accepted_packets;
  if (flows_.size() < kMaxFlows) flows_.emplace(key, Flow{static_cast<std::uint32_t>(*m), false, now});
  return Verdict::pass;
}

PolicyFilter::Verdict PolicyFilter::tracked(Instant now, ByteSpan packet) {
  if (!rules_ || flows_.empty()) return Verdict::pass;
  FlowKey key, quoted;
  if (parse(packet, key, quoted) != Parsed::flow) return Verdict::pass;
  const auto it = flows_.find(key);
  if (it == flows_.end()) return Verdict::pass;
  if (it->second.cut) {
    ++denied_;
    return Verdict::drop;
  }
  it->second.last_seen = now;
  return Verdict::pass;
}

void PolicyFilter::expire(Instant now) {
  std::erase_if(flows_, [&](const auto& entry) { return now - entry.second.last_seen > kFlowIdle; });
  std::erase_if(lan_opened_, [&](const auto& entry) { return now - entry.second > kFlowIdle; });
}

PolicyCounters PolicyFilter::counters() const {
  PolicyCounters c;
  c.in_force = rules_.has_value();
  c.version = version_;
  c.rules = per_rule_;
  c.denied = denied_;
  c.cut = cut_;
  c.flows = flows_.size();
  c.rejected_updates = rejected_;
  return c;
}

std::string PolicyFilter::describe() const {
  if (!rules_) return "no access policy: every peer may open flows into this node\n";
  std::ostringstream out;
  out << "access policy version " << version_ << ": " << rules_->rules().size()
      << " rules for traffic into this node (anything else inbound is denied)\n"
      << rules_->describe();
  return out.str();
}

}  // namespace knit::agent
