#include "policy/document.hpp"

#include <charconv>

#include "policy/limits.hpp"

namespace knit::policy {
namespace {

struct Fail {
  PolicyError error;
};

[[noreturn]] void fail(Position at, std::string message) { throw Fail{{at, std::move(message)}}; }

void expect(const JsonNode& n, JsonNode::Kind kind, std::string_view what) {
  if (n.kind != kind)
    fail(n.at, std::string(what) + " must be " + kind_name(kind) + ", not " + kind_name(n.kind));
}

void expect_size(const JsonNode& n, std::size_t max, std::string_view what) {
  if (n.items.size() > max)
    fail(n.at, std::string(what) + " has " + std::to_string(n.items.size()) + " entries (at most " +
                   std::to_string(max) + ")");
}

void only_keys(const JsonNode& obj, std::initializer_list<std::string_view> allowed, std::string_view what) {
  for (std::size_t i = 0; i < obj.keys.size(); ++i) {
    bool ok = false;
    for (std::string_view a : allowed) ok = ok || obj.keys[i] == a;
    if (ok) continue;
    std::string list;
    for (std::string_view a : allowed) list += (list.empty() ? "" : ", ") + std::string(a);
    fail(obj.key_at[i], "unknown field \"" + obj.keys[i] + "\" in " + std::string(what) + " (fields: " + list + ")");
  }
}

const std::string& string_of(const JsonNode& n, std::string_view what) {
  expect(n, JsonNode::Kind::string, what);
  return n.text;
}

std::uint8_t parse_protocols(const JsonNode& n, bool allow_any) {
  const std::string& p = string_of(n, "\"proto\"");
  if (p == "tcp") return kTcp;
  if (p == "udp") return kUdp;
  if (p == "icmp") return kIcmp;
  if (allow_any && p == "any") return kAnyProtocol;
  fail(n.at, "unknown protocol \"" + p + "\" (tcp, udp, icmp" + (allow_any ? ", any)" : ")"));
}

Selector selector_at(const JsonNode& n, std::string_view what) {
  std::string why;
  auto s = parse_selector(string_of(n, what), &why);
  if (!s) fail(n.at, why);
  s->at = n.at;
  return *s;
}

Destination destination_at(const JsonNode& n, std::string_view what) {
  std::string why;
  auto d = parse_destination(string_of(n, what), &why);
  if (!d) fail(n.at, why);
  d->at = d->target.at = n.at;
  return *d;
}

std::vector<Destination> destinations(const JsonNode& list, std::string_view what) {
  expect(list, JsonNode::Kind::array, what);
  expect_size(list, kMaxListItems, what);
  std::vector<Destination> out;
  for (const JsonNode& item : list.items) out.push_back(destination_at(item, what));
  return out;
}

bool has_prefix(std::string_view s, std::string_view p) { return s.substr(0, p.size()) == p; }

Group read_group(const std::string& key, Position key_at, const JsonNode& value) {
  if (!has_prefix(key, "group:") || !valid_name(key.substr(6)))
    fail(key_at, "a group is named group:NAME (NAME: 1 to 63 of a-z A-Z 0-9 - _), not \"" + key + "\"");
  Group g{key.substr(6), {}, key_at};
  expect(value, JsonNode::Kind::array, "a group");
  expect_size(value, kMaxListItems, "a group");
  for (const JsonNode& m : value.items) {
    Selector s = selector_at(m, "a group member");
    if (s.kind != Selector::Kind::name && s.kind != Selector::Kind::tag)
      fail(m.at, "a group holds node names and tags, not \"" + s.spelling + "\"");
    g.members.push_back(std::move(s));
  }
  return g;
}

Host read_host(const std::string& key, Position key_at, const JsonNode& value) {
  if (!valid_name(key)) fail(key_at, "a host name is 1 to 63 of a-z A-Z 0-9 - _, not \"" + key + "\"");
  Host h{key, {}, key_at};
  std::vector<const JsonNode*> items;
  if (value.kind == JsonNode::Kind::array) {
    expect_size(value, kMaxListItems, "a host");
    if (value.items.empty()) fail(value.at, "host \"" + key + "\" has no addresses");
    for (const JsonNode& i : value.items) items.push_back(&i);
  } else {
    items.push_back(&value);
  }
  for (const JsonNode* i : items) {
    std::string why;
    auto s = parse_selector(string_of(*i, "a host's address"), &why);
    if (!s || s->kind != Selector::Kind::prefix)
      fail(i->at, s ? "a host is addresses and CIDRs, not \"" + i->text + "\"" : why);
    h.prefixes.push_back(s->prefix);
  }
  return h;
}

Rule read_rule(const JsonNode& n) {
  expect(n, JsonNode::Kind::object, "a rule");
  only_keys(n, {"action", "src", "dst", "proto", "name"}, "a rule");
  Rule r;
  r.at = n.at;
  const JsonNode* action = n.find("action");
  if (!action) fail(n.at, "a rule needs \"action\": \"accept\"");
  if (string_of(*action, "\"action\"") != "accept")
    fail(action->at, "the only action is \"accept\" (anything not accepted is denied), not \"" + action->text + "\"");
  const JsonNode* src = n.find("src");
  const JsonNode* dst = n.find("dst");
  if (!src) fail(n.at, "a rule needs \"src\"");
  if (!dst) fail(n.at, "a rule needs \"dst\"");
  expect(*src, JsonNode::Kind::array, "\"src\"");
  expect_size(*src, kMaxListItems, "\"src\"");
  if (src->items.empty()) fail(src->at, "\"src\" is empty");
  for (const JsonNode& s : src->items) r.src.push_back(selector_at(s, "a source"));
  r.dst = destinations(*dst, "\"dst\"");
  if (r.dst.empty()) fail(dst->at, "\"dst\" is empty");
  if (const JsonNode* p = n.find("proto")) r.protocols = parse_protocols(*p, true);
  if (const JsonNode* name = n.find("name")) {
    r.name = string_of(*name, "\"name\"");
    if (r.name.empty() || r.name.size() > kMaxRuleNameLength)
      fail(name->at, "a rule's name is 1 to " + std::to_string(kMaxRuleNameLength) + " bytes");
    for (char c : r.name)
      if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) fail(name->at, "a rule's name has a control character");
  }
  return r;
}

PolicyTest read_test(const JsonNode& n) {
  expect(n, JsonNode::Kind::object, "a test");
  only_keys(n, {"src", "proto", "accept", "deny"}, "a test");
  PolicyTest t;
  t.at = n.at;
  const JsonNode* src = n.find("src");
  if (!src) fail(n.at, "a test needs \"src\"");
  t.src = selector_at(*src, "a test's \"src\"");
  if (t.src.kind == Selector::Kind::any || t.src.kind == Selector::Kind::group)
    fail(src->at, "a test's \"src\" is one node, tag, host or address, not \"" + t.src.spelling + "\"");
  if (const JsonNode* p = n.find("proto")) t.protocols = parse_protocols(*p, false);
  if (const JsonNode* a = n.find("accept")) t.accept = destinations(*a, "\"accept\"");
  if (const JsonNode* d = n.find("deny")) t.deny = destinations(*d, "\"deny\"");
  if (t.accept.empty() && t.deny.empty()) fail(n.at, "a test needs \"accept\" or \"deny\"");
  for (const auto* list : {&t.accept, &t.deny}) {
    for (const Destination& d : *list) {
      if (d.target.kind == Selector::Kind::any || d.target.kind == Selector::Kind::group)
        fail(d.at, "a test's destination is one node, tag, host or address, not \"" + d.spelling + "\"");
      if (t.protocols == kIcmp ? !d.all_ports() : d.all_ports())
        fail(d.at, t.protocols == kIcmp ? "an ICMP test's destination has port *"
                                        : "a test names its ports (not *): \"" + d.spelling + "\"");
    }
  }
  return t;
}

Document read_document(const JsonNode& root) {
  expect(root, JsonNode::Kind::object, "the policy");
  only_keys(root, {"groups", "hosts", "rules", "tests"}, "the policy");
  Document doc;
  if (const JsonNode* groups = root.find("groups")) {
    expect(*groups, JsonNode::Kind::object, "\"groups\"");
    expect_size(*groups, kMaxGroups, "\"groups\"");
    for (std::size_t i = 0; i < groups->items.size(); ++i)
      doc.groups.push_back(read_group(groups->keys[i], groups->key_at[i], groups->items[i]));
  }
  if (const JsonNode* hosts = root.find("hosts")) {
    expect(*hosts, JsonNode::Kind::object, "\"hosts\"");
    expect_size(*hosts, kMaxHosts, "\"hosts\"");
    for (std::size_t i = 0; i < hosts->items.size(); ++i)
      doc.hosts.push_back(read_host(hosts->keys[i], hosts->key_at[i], hosts->items[i]));
  }
  if (const JsonNode* rules = root.find("rules")) {
    expect(*rules, JsonNode::Kind::array, "\"rules\"");
    expect_size(*rules, kMaxRules, "\"rules\"");
    for (const JsonNode& r : rules->items) doc.rules.push_back(read_rule(r));
  }
  if (const JsonNode* tests = root.find("tests")) {
    expect(*tests, JsonNode::Kind::array, "\"tests\"");
    expect_size(*tests, kMaxTests, "\"tests\"");
    for (const JsonNode& t : tests->items) doc.tests.push_back(read_test(t));
  }
  return doc;
}

std::optional<std::uint16_t> port_number(std::string_view s) {
  unsigned v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (s.empty() || ec != std::errc() || p != s.data() + s.size() || v < 1 || v > 65535) return std::nullopt;
  return static_cast<std::uint16_t>(v);
}

bool prefix_has_host_bits(const IpPrefix& p) {
  const std::uint8_t* b = p.address.bytes();
  const std::size_t bits = p.address.size() * 8;
  for (std::size_t i = p.length; i < bits; ++i)
    if (b[i / 8] & (0x80 >> (i % 8))) return true;
  return false;
}

}  // namespace

std::string protocols_name(std::uint8_t bits) {
  if (bits == kAnyProtocol) return "any";
  std::string out;
  if (bits & kTcp) out += "tcp";
  if (bits & kUdp) out += out.empty() ? "udp" : "|udp";
  if (bits & kIcmp) out += out.empty() ? "icmp" : "|icmp";
  if (bits & kOtherProtocols) out += out.empty() ? "other" : "|other";
  return out.empty() ? "none" : out;
}

bool valid_name(std::string_view name) {
  if (name.empty() || name.size() > kMaxNameLength) return false;
  for (char c : name) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_';
    if (!ok) return false;
  }
  return true;
}

std::optional<Selector> parse_selector(std::string_view text, std::string* why) {
  Selector s;
  s.spelling = std::string(text);
  const auto bad = [&](std::string message) -> std::optional<Selector> {
    if (why) *why = std::move(message);
    return std::nullopt;
  };
  if (text == "*") return s;
  if (has_prefix(text, "tag:") || has_prefix(text, "group:")) {
    const bool tag = text[0] == 't';
    s.kind = tag ? Selector::Kind::tag : Selector::Kind::group;
    s.name = std::string(text.substr(tag ? 4 : 6));
    if (!valid_name(s.name))
      return bad("\"" + std::string(text) + "\": a " + (tag ? "tag" : "group") + " name is 1 to 63 of a-z A-Z 0-9 - _");
    return s;
  }
  if (valid_name(text) && text.find_first_not_of("0123456789") != std::string_view::npos) {
    s.kind = Selector::Kind::name;
    s.name = std::string(text);
    return s;
  }
  auto prefix = IpPrefix::parse(text);
  if (!prefix) return bad("\"" + std::string(text) + "\" is not *, tag:NAME, group:NAME, a name, an address or a CIDR");
  if (prefix_has_host_bits(*prefix))
    return bad("\"" + std::string(text) + "\" has bits set past its /" + std::to_string(prefix->length));
  s.kind = Selector::Kind::prefix;
  s.prefix = *prefix;
  return s;
}

std::optional<Destination> parse_destination(std::string_view text, std::string* why) {
  const auto bad = [&](std::string message) -> std::optional<Destination> {
    if (why) *why = std::move(message);
    return std::nullopt;
  };
  std::string_view target, ports;
  if (!text.empty() && text[0] == '[') {
    const std::size_t close = text.find(']');
    if (close == std::string_view::npos || close + 1 >= text.size() || text[close + 1] != ':')
      return bad("\"" + std::string(text) + "\": write [IPv6]:PORTS");
    target = text.substr(1, close - 1);
    ports = text.substr(close + 2);
  } else {
    const std::size_t colon = text.rfind(':');
    if (colon == std::string_view::npos)
      return bad("\"" + std::string(text) + "\" has no ports: write TARGET:PORTS (PORTS: * or 22,80-90)");
    target = text.substr(0, colon);
    ports = text.substr(colon + 1);
  }
  Destination d;
  d.spelling = std::string(text);
  auto sel = parse_selector(target, why);
  if (!sel) return std::nullopt;
  d.target = *sel;
  if (ports == "*") {
    d.ports = {kAllPorts};
    return d;
  }
  std::size_t start = 0;
  while (true) {
    const std::size_t comma = ports.find(',', start);
    const std::string_view item = ports.substr(start, comma == std::string_view::npos ? std::string_view::npos : comma - start);
    const std::size_t dash = item.find('-');
    const auto first = port_number(item.substr(0, dash));
    const auto last = dash == std::string_view::npos ? first : port_number(item.substr(dash + 1));
    if (!first || !last)
      return bad("\"" + std::string(text) + "\": bad port \"" + std::string(item) + "\" (1 to 65535, or N-M)");
    if (*first > *last) return bad("\"" + std::string(text) + "\": the range " + std::string(item) + " runs backwards");
    if (d.ports.size() >= kMaxPortRanges)
      return bad("\"" + std::string(text) + "\": at most " + std::to_string(kMaxPortRanges) + " port ranges");
    d.ports.push_back({*first, *last});
    if (comma == std::string_view::npos) break;
    start = comma + 1;
  }
  return d;
}

const Group* Document::group(std::string_view name) const {
  for (const Group& g : groups)
    if (g.name == name) return &g;
  return nullptr;
}

const Host* Document::host(std::string_view name) const {
  for (const Host& h : hosts)
    if (h.name == name) return &h;
  return nullptr;
}

std::string PolicyError::describe() const {
  return "line " + std::to_string(at.line) + ", column " + std::to_string(at.column) + ": " + message;
}

std::string rule_label(const Document& doc, std::size_t index) {
  if (index >= doc.rules.size()) return "rule " + std::to_string(index + 1);
  const Rule& r = doc.rules[index];
  if (!r.name.empty()) return "\"" + r.name + "\" (line " + std::to_string(r.at.line) + ")";
  return "rule " + std::to_string(index + 1) + " (line " + std::to_string(r.at.line) + ")";
}

std::variant<Document, PolicyError> parse_document(std::string_view text) {
  auto tree = read_json(text);
  if (auto* e = std::get_if<ReadError>(&tree)) return PolicyError{e->at, e->message};
  // Errors inside the walk are thrown to here and returned as values: nothing escapes.
  try {
    Document doc = read_document(std::get<JsonNode>(tree));
    for (std::size_t i = 0; i < doc.groups.size(); ++i)
      for (std::size_t j = 0; j < i; ++j)
        if (doc.groups[i].name == doc.groups[j].name) fail(doc.groups[i].at, "group:" + doc.groups[i].name + " is defined twice");
    return doc;
  } catch (const Fail& f) {
    return f.error;
  }
}

}  // namespace knit::policy
