#include "policy/compile.hpp"

#include <algorithm>
#include <charconv>

#include "policy/limits.hpp"

namespace knit::policy {
namespace {

IpPrefix host_prefix(const IpAddress& a) { return {a, static_cast<std::uint8_t>(a.is_v4() ? 32 : 128)}; }

bool has_tag(const MeshNode& n, std::string_view tag) {
  return std::find(n.tags.begin(), n.tags.end(), tag) != n.tags.end();
}
bool has_address(const MeshNode& n, const IpAddress& a) {
  return std::find(n.addresses.begin(), n.addresses.end(), a) != n.addresses.end();
}

// The prefixes traffic into `node` can be for: its addresses and its routes.
std::vector<IpPrefix> own_prefixes(const MeshNode& node) {
  std::vector<IpPrefix> out;
  for (const IpAddress& a : node.addresses) out.push_back(host_prefix(a));
  out.insert(out.end(), node.routes.begin(), node.routes.end());
  return out;
}

bool member_is(const Selector& member, const MeshNode& node) {
  return member.kind == Selector::Kind::tag ? has_tag(node, member.name) : node.name == member.name;
}

void add_unique(std::vector<IpPrefix>& out, const IpPrefix& p) {
  if (std::find(out.begin(), out.end(), p) == out.end()) out.push_back(p);
}

// ---- compiled: selectors to prefixes

void source_prefixes(const Document& doc, const Mesh& mesh, const Selector& s, std::vector<IpPrefix>& out) {
  switch (s.kind) {
    case Selector::Kind::any:
      add_unique(out, *IpPrefix::parse("0.0.0.0/0"));
      add_unique(out, *IpPrefix::parse("::/0"));
      return;
    case Selector::Kind::prefix: add_unique(out, s.prefix); return;
    case Selector::Kind::tag:
    case Selector::Kind::group:
    case Selector::Kind::name: break;
  }
  if (s.kind == Selector::Kind::name) {
    if (const Host* h = doc.host(s.name)) {
      for (const IpPrefix& p : h->prefixes) add_unique(out, p);
      return;
    }
  }
  const Group* g = s.kind == Selector::Kind::group ? doc.group(s.name) : nullptr;
  for (const MeshNode& n : mesh.nodes) {
    bool selected = false;
    if (s.kind == Selector::Kind::tag) selected = has_tag(n, s.name);
    else if (s.kind == Selector::Kind::name) selected = n.name == s.name;
    else if (g) selected = std::any_of(g->members.begin(), g->members.end(), [&](const Selector& m) { return member_is(m, n); });
    if (selected)
      for (const IpAddress& a : n.addresses) add_unique(out, host_prefix(a));
  }
}

void destination_prefixes(const Document& doc, const MeshNode& node, const Selector& s, std::vector<IpPrefix>& out) {
  const auto addresses = [&] {
    for (const IpAddress& a : node.addresses) add_unique(out, host_prefix(a));
  };
  const auto within = [&](const IpPrefix& p) {  // p's overlap with what is node's
    for (const IpPrefix& q : own_prefixes(node))
      if (prefixes_overlap(p, q)) add_unique(out, p.length >= q.length ? p : q);
  };
  switch (s.kind) {
    case Selector::Kind::any:
      for (const IpPrefix& q : own_prefixes(node)) add_unique(out, q);
      return;
    case Selector::Kind::prefix: within(s.prefix); return;
    case Selector::Kind::tag:
      if (has_tag(node, s.name)) addresses();
      return;
    case Selector::Kind::group:
      if (const Group* g = doc.group(s.name))
        if (std::any_of(g->members.begin(), g->members.end(), [&](const Selector& m) { return member_is(m, node); }))
          addresses();
      return;
    case Selector::Kind::name:
      if (const Host* h = doc.host(s.name)) {
        for (const IpPrefix& p : h->prefixes) within(p);
      } else if (node.name == s.name) {
        addresses();
      }
      return;
  }
}

// ---- naive: selectors asked about one address

bool source_matches(const Document& doc, const Mesh& mesh, const Selector& s, const IpAddress& a) {
  switch (s.kind) {
    case Selector::Kind::any: return true;
    case Selector::Kind::prefix: return prefix_contains(s.prefix, a);
    case Selector::Kind::tag:
      return std::any_of(mesh.nodes.begin(), mesh.nodes.end(), [&](const MeshNode& n) { return has_tag(n, s.name) && has_address(n, a); });
    case Selector::Kind::group: {
      const Group* g = doc.group(s.name);
      if (!g) return false;
      for (const Selector& m : g->members)
        if (source_matches(doc, mesh, m, a)) return true;
      return false;
    }
    case Selector::Kind::name:
      if (const Host* h = doc.host(s.name))
        return std::any_of(h->prefixes.begin(), h->prefixes.end(), [&](const IpPrefix& p) { return prefix_contains(p, a); });
      if (const MeshNode* n = mesh.find(s.name)) return has_address(*n, a);
      return false;
  }
  return false;
}

bool is_nodes(const MeshNode& node, const IpAddress& a) {
  const auto own = own_prefixes(node);
  return std::any_of(own.begin(), own.end(), [&](const IpPrefix& q) { return prefix_contains(q, a); });
}

bool destination_matches(const Document& doc, const MeshNode& node, const Selector& s, const IpAddress& a) {
  switch (s.kind) {
    case Selector::Kind::any: return is_nodes(node, a);
    case Selector::Kind::prefix: return prefix_contains(s.prefix, a) && is_nodes(node, a);
    case Selector::Kind::tag: return has_tag(node, s.name) && has_address(node, a);
    case Selector::Kind::group: {
      const Group* g = doc.group(s.name);
      return g && has_address(node, a) &&
             std::any_of(g->members.begin(), g->members.end(), [&](const Selector& m) { return member_is(m, node); });
    }
    case Selector::Kind::name:
      if (const Host* h = doc.host(s.name))
        return is_nodes(node, a) &&
               std::any_of(h->prefixes.begin(), h->prefixes.end(), [&](const IpPrefix& p) { return prefix_contains(p, a); });
      return node.name == s.name && has_address(node, a);
  }
  return false;
}

bool ports_match(const Destination& d, std::uint8_t bit, std::uint16_t port) {
  if (bit != kTcp && bit != kUdp) return d.all_ports();
  return std::any_of(d.ports.begin(), d.ports.end(), [&](const PortRange& r) { return port >= r.first && port <= r.last; });
}

std::optional<PolicyError> unknown(const Document& doc, const Mesh& mesh, const Selector& s) {
  if (s.kind == Selector::Kind::group && !doc.group(s.name))
    return PolicyError{s.at, "unknown group \"group:" + s.name + "\""};
  if (s.kind == Selector::Kind::name && !doc.host(s.name) && !mesh.find(s.name))
    return PolicyError{s.at, "unknown name \"" + s.name + "\": no host or node is called so"};
  return std::nullopt;
}

// A test's or check's source: one address.
std::optional<IpAddress> source_address(const Document& doc, const Mesh& mesh, const Selector& s, bool want_v4) {
  std::vector<IpPrefix> prefixes;
  source_prefixes(doc, mesh, s, prefixes);
  for (int pass = 0; pass < 2; ++pass)
    for (const IpPrefix& p : prefixes)
      if (pass == 1 || p.address.is_v4() == want_v4) return p.address;
  return std::nullopt;
}

std::string protocol_word(std::uint8_t bit) {
  return bit == kTcp ? "tcp" : bit == kUdp ? "udp" : bit == kIcmp ? "icmp" : "other";
}

}  // namespace

const MeshNode* Mesh::find(std::string_view name) const {
  for (const MeshNode& n : nodes)
    if (n.name == name) return &n;
  return nullptr;
}

std::optional<PolicyError> check_names(const Document& doc, const Mesh& mesh) {
  for (const Group& g : doc.groups)
    for (const Selector& m : g.members)
      if (m.kind == Selector::Kind::name && !mesh.find(m.name))
        return PolicyError{m.at, "unknown node \"" + m.name + "\" in group:" + g.name};
  for (const Rule& r : doc.rules) {
    for (const Selector& s : r.src)
      if (auto e = unknown(doc, mesh, s)) return e;
    for (const Destination& d : r.dst)
      if (auto e = unknown(doc, mesh, d.target)) return e;
  }
  for (const PolicyTest& t : doc.tests) {
    if (auto e = unknown(doc, mesh, t.src)) return e;
    for (const auto* list : {&t.accept, &t.deny})
      for (const Destination& d : *list)
        if (auto e = unknown(doc, mesh, d.target)) return e;
  }
  return std::nullopt;
}

std::string wire_label(const Document& doc, std::size_t index) {
  std::string label = rule_label(doc, index);
  if (label.size() <= kMaxRuleNameLength) return label;
  // Only a long name gets here: shorten it, on a UTF-8 boundary, so its line number still fits.
  const Rule& r = doc.rules[index];
  const std::string tail = "\xe2\x80\xa6\" (line " + std::to_string(r.at.line) + ")";
  std::size_t keep = std::min(r.name.size(), kMaxRuleNameLength - 1 - tail.size());
  while (keep > 0 && (static_cast<unsigned char>(r.name[keep]) & 0xc0) == 0x80) --keep;
  return "\"" + r.name.substr(0, keep) + tail;
}

RuleSet compile_for(const Document& doc, const Mesh& mesh, const MeshNode& node) {
  std::vector<CompiledRule> out;
  for (std::size_t i = 0; i < doc.rules.size(); ++i) {
    const Rule& r = doc.rules[i];
    std::vector<IpPrefix> src;
    for (const Selector& s : r.src) source_prefixes(doc, mesh, s, src);
    if (src.empty()) continue;
    for (const Destination& d : r.dst) {
      CompiledRule c;
      destination_prefixes(doc, node, d.target, c.dst);
      if (c.dst.empty()) continue;
      c.rule = static_cast<std::uint32_t>(i);
      c.name = wire_label(doc, i);
      c.protocols = r.protocols;
      c.src = src;
      c.ports = d.ports;
      out.push_back(std::move(c));
    }
  }
  return RuleSet(std::move(out));
}

std::optional<std::size_t> evaluate(const Document& doc, const Mesh& mesh, const MeshNode& node, const FlowKey& flow) {
  const std::uint8_t bit = protocol_bit(flow.ip_protocol);
  if (flow.src.is_v4() != flow.dst.is_v4()) return std::nullopt;
  for (std::size_t i = 0; i < doc.rules.size(); ++i) {
    const Rule& r = doc.rules[i];
    if (!(r.protocols & bit)) continue;
    if (!std::any_of(r.src.begin(), r.src.end(), [&](const Selector& s) { return source_matches(doc, mesh, s, flow.src); }))
      continue;
    for (const Destination& d : r.dst)
      if (ports_match(d, bit, flow.dst_port) && destination_matches(doc, node, d.target, flow.dst)) return i;
  }
  return std::nullopt;
}

std::vector<CheckAnswer> check(const Document& doc, const Mesh& mesh, const Selector& src, const Selector& dst,
                               std::uint8_t protocol, std::uint16_t port, std::string* why) {
  std::vector<CheckAnswer> out;
  // Destination nodes and the address on each.
  std::vector<std::pair<const MeshNode*, std::optional<IpAddress>>> targets;
  for (const MeshNode& n : mesh.nodes) {
    switch (dst.kind) {
      case Selector::Kind::tag:
        if (has_tag(n, dst.name)) targets.push_back({&n, std::nullopt});
        break;
      case Selector::Kind::prefix:
        if (is_nodes(n, dst.prefix.address)) targets.push_back({&n, dst.prefix.address});
        break;
      case Selector::Kind::name:
        if (const Host* h = doc.host(dst.name)) {
          for (const IpPrefix& p : h->prefixes)
            if (is_nodes(n, p.address)) targets.push_back({&n, p.address});
        } else if (n.name == dst.name) {
          targets.push_back({&n, std::nullopt});
        }
        break;
      default: break;
    }
  }
  if (targets.empty()) {
    if (why) *why = "no node is \"" + dst.spelling + "\" or routes its address";
    return out;
  }
  const std::uint8_t ip_protocol = protocol == kTcp ? 6 : protocol == kUdp ? 17 : 1;
  for (const auto& [node, fixed] : targets) {
    std::optional<IpAddress> d = fixed;
    std::optional<IpAddress> s;
    if (d) {
      s = source_address(doc, mesh, src, d->is_v4());
    } else {
      s = source_address(doc, mesh, src, true);
      if (s)
        for (const IpAddress& a : node->addresses)
          if (a.is_v4() == s->is_v4()) { d = a; break; }
    }
    if (!s) {
      if (why) *why = "\"" + src.spelling + "\" has no address";
      return {};
    }
    if (!d || d->is_v4() != s->is_v4()) continue;
    FlowKey flow{*s, *d, d->is_v4() || ip_protocol != 1 ? ip_protocol : std::uint8_t{58}, port};
    out.push_back({node->name, *s, *d, evaluate(doc, mesh, *node, flow)});
  }
  if (out.empty() && why) *why = "\"" + src.spelling + "\" and \"" + dst.spelling + "\" share no address family";
  return out;
}

std::optional<PolicyError> run_tests(const Document& doc, const Mesh& mesh) {
  for (const PolicyTest& t : doc.tests) {
    for (int expect_accept = 1; expect_accept >= 0; --expect_accept) {
      for (const Destination& d : expect_accept ? t.accept : t.deny) {
        std::vector<std::uint16_t> ports;
        for (const PortRange& r : d.ports) {
          ports.push_back(r.first);
          if (r.last != r.first) ports.push_back(r.last);
        }
        if (t.protocols == kIcmp) ports = {0};
        for (std::uint16_t port : ports) {
          std::string why;
          const auto answers = check(doc, mesh, t.src, d.target, t.protocols, port, &why);
          if (answers.empty()) return PolicyError{d.at, "test cannot run: " + why};
          for (const CheckAnswer& a : answers) {
            if (a.rule.has_value() == static_cast<bool>(expect_accept)) continue;
            const std::string what = t.src.spelling + " -> " + a.node + " (" + a.dst.to_string() + ")" +
                                     (t.protocols == kIcmp ? "" : " port " + std::to_string(port)) + "/" +
                                     protocol_word(t.protocols);
            return PolicyError{d.at, "test failed: " + what +
                                         (a.rule ? " is accepted by " + rule_label(doc, *a.rule) + ", expected denied"
                                                 : " is denied (no rule accepts it), expected accepted")};
          }
        }
      }
    }
  }
  return std::nullopt;
}

std::optional<PolicyError> validate(const Document& doc, const Mesh& mesh) {
  if (auto e = check_names(doc, mesh)) return e;
  return run_tests(doc, mesh);
}

std::optional<std::pair<std::uint8_t, std::uint16_t>> parse_port_protocol(std::string_view text) {
  if (text == "icmp") return std::pair<std::uint8_t, std::uint16_t>{kIcmp, 0};
  const std::size_t slash = text.find('/');
  if (slash == std::string_view::npos) return std::nullopt;
  const std::string_view number = text.substr(0, slash), proto = text.substr(slash + 1);
  unsigned port = 0;
  auto [p, ec] = std::from_chars(number.data(), number.data() + number.size(), port);
  if (number.empty() || ec != std::errc() || p != number.data() + number.size() || port > 65535) return std::nullopt;
  if (proto == "tcp" && port > 0) return std::pair<std::uint8_t, std::uint16_t>{kTcp, static_cast<std::uint16_t>(port)};
  if (proto == "udp" && port > 0) return std::pair<std::uint8_t, std::uint16_t>{kUdp, static_cast<std::uint16_t>(port)};
  if (proto == "icmp") return std::pair<std::uint8_t, std::uint16_t>{kIcmp, 0};
  return std::nullopt;
}

}  // namespace knit::policy
