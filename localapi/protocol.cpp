#include "localapi/protocol.hpp"

#include <nlohmann/json.hpp>

#include <cmath>
#include <type_traits>

#include "base/bytes.hpp"
#include "localapi/json_fields.hpp"
#include "localapi/status_routes.hpp"

namespace knit::localapi {
namespace {

using namespace detail;

constexpr std::size_t kMaxDepth = 16;

// Nesting deeper than any message has is refused before the parser sees it.
bool nesting_ok(std::string_view text) {
  std::size_t depth = 0;
  bool in_string = false;
  bool escaped = false;
  for (char c : text) {
    if (in_string) {
      if (escaped) escaped = false;
      else if (c == '\\') escaped = true;
      else if (c == '"') in_string = false;
      continue;
    }
    if (c == '"') in_string = true;
    else if (c == '{' || c == '[') {
      if (++depth > kMaxDepth) return false;
    } else if ((c == '}' || c == ']') && depth > 0) {
      --depth;
    }
  }
  return true;
}

std::string dump(const json& doc, int indent = -1) {
  return doc.dump(indent, ' ', false, json::error_handler_t::replace);
}

// ---- the status contract ----

json nat_json(const NatStatus& nat) {
  return {{"udp", or_null(nat.udp)},
          {"public_v4", endpoint_or_null(nat.public_v4)},
          {"public_v6", endpoint_or_null(nat.public_v6)},
          {"mapping_varies", or_null(nat.mapping_varies)},
          {"filtering", nat.filtering},
          {"mapping", nat.mapping},
          {"mapping_source", nat.mapping_source}};
}

NatStatus nat_from(const json& object) {
  NatStatus nat;
  nat.udp = optional_bool(object, "udp");
  nat.public_v4 = optional_endpoint(object, "public_v4");
  nat.public_v6 = optional_endpoint(object, "public_v6");
  nat.mapping_varies = optional_bool(object, "mapping_varies");
  nat.filtering = text_field(object, "filtering", 16);
  if (object.contains("mapping")) nat.mapping = text_field(object, "mapping", 16);
  if (object.contains("mapping_source")) nat.mapping_source = text_field(object, "mapping_source", 16);
  return nat;
}

json netcheck_json(const NetcheckReply& r) {
  json out = nat_json(r.nat);
  out["mapping"] = r.mapping;
  out["portmap"] = r.portmap;
  out["portmapped"] = endpoint_or_null(r.portmapped);
  json relays = json::object();
  for (const auto& [name, ms] : r.relay_ms) relays[name] = ms;
  out["relay_latency_ms"] = relays;
  out["home_relay"] = or_null(r.home_relay);
  return out;
}

json dns_json(const DnsStatus& d) {
  json split = json::object();
  for (const auto& [domain, resolvers] : d.split) split[domain] = resolvers;
  json counters = json::object();
  for (const auto& [name, value] : d.counters) counters[name] = value;
  return {{"accept_dns", d.accept_dns}, {"manage_resolv_conf", d.manage_resolv_conf}, {"mode", d.mode},
          {"detail", d.detail}, {"domain", d.domain}, {"listen", d.listen}, {"upstreams", d.upstreams},
          {"split", split}, {"names", d.names}, {"counters", counters}};
}

std::vector<std::string> short_texts(const json& object, const char* name, std::size_t max) {
  const json& list = field(object, name);
  if (!list.is_array() || list.size() > max) throw std::invalid_argument(std::string("\"") + name + "\" must be a short list");
  std::vector<std::string> out;
  for (const json& item : list) {
    if (!item.is_string() || item.get<std::string>().size() > kMaxShortText) throw std::invalid_argument("bad list entry");
    out.push_back(item.get<std::string>());
  }
  return out;
}

DnsStatus dns_from(const json& object) {
  DnsStatus d;
  d.accept_dns = bool_field(object, "accept_dns");
  d.manage_resolv_conf = bool_field(object, "manage_resolv_conf");
  d.mode = text_field(object, "mode", 32);
  d.detail = text_field(object, "detail", 4096, false);
  d.domain = text_field(object, "domain", 255, false);
  d.listen = short_texts(object, "listen", 8);
  d.upstreams = short_texts(object, "upstreams", 16);
  const json& split = field(object, "split");
  if (!split.is_object() || split.size() > 64) throw std::invalid_argument("\"split\" must be an object");
  for (const auto& [domain, resolvers] : split.items()) {
    if (domain.size() > 255) throw std::invalid_argument("bad split domain");
    d.split[domain] = short_texts(split, domain.c_str(), 8);
  }
  d.names = counter_field(object, "names");
  const json& counters = field(object, "counters");
  if (!counters.is_object() || counters.size() > 64) throw std::invalid_argument("\"counters\" must be an object");
  for (const auto& [name, value] : counters.items()) {
    if (!value.is_number_unsigned() || name.size() > kMaxShortText) throw std::invalid_argument("bad counter");
    d.counters[name] = value.get<std::uint64_t>();
  }
  return d;
}

NetcheckReply netcheck_from(const json& object) {
  NetcheckReply r;
  r.nat = nat_from(object);
  r.mapping = text_field(object, "mapping", 16);
  r.nat.mapping = r.mapping;  // one field on the wire (protocol.hpp)
  const json& portmap = field(object, "portmap");
  if (!portmap.is_array() || portmap.size() > 8) throw std::invalid_argument("\"portmap\" must be a short list");
  for (const json& p : portmap) {
    if (!p.is_string() || p.get<std::string>().size() > 16) throw std::invalid_argument("bad \"portmap\" entry");
    r.portmap.push_back(p.get<std::string>());
  }
  r.portmapped = optional_endpoint(object, "portmapped");
  const json& relays = field(object, "relay_latency_ms");
  if (!relays.is_object() || relays.size() > 64) throw std::invalid_argument("\"relay_latency_ms\" must be an object");
  for (const auto& [name, ms] : relays.items()) {
    if (!ms.is_number_unsigned() || name.size() > kMaxShortText) throw std::invalid_argument("bad relay latency");
    r.relay_ms[name] = ms.get<std::uint32_t>();
  }
  r.home_relay = optional_text(object, "home_relay", kMaxShortText);
  return r;
}

json self_json(const SelfStatus& self) {
  json endpoints = json::array();
  for (const Endpoint& endpoint : self.endpoints) endpoints.push_back(endpoint.to_string());
  return {{"name", self.name},
          {"ipv4", self.ipv4.to_string()},
          {"ipv6", self.ipv6.to_string()},
          {"node_key", to_base64(self.node_key)},
          {"endpoints", endpoints},
          {"nat", nat_json(self.nat)},
          {"relay", or_null(self.relay)}};
}

// ---- knitd's extension of "self": shields, port forwards, filter counters ----

json forward_json(const ForwardStatus& f) {
  return {{"proto", std::string(to_string(f.rule.protocol))},
          {"mesh_port", f.rule.mesh_port},
          {"target", f.rule.target.to_string()},
          {"active", f.active},
          {"packets_in", f.packets_in},
          {"packets_out", f.packets_out},
          {"connections", f.connections}};
}

ForwardRule forward_rule_from(const json& object) {
  if (!object.is_object()) throw std::invalid_argument("a forward must be an object");
  ForwardRule rule;
  auto protocol = parse_forward_protocol(text_field(object, "proto", 8));
  if (!protocol) throw std::invalid_argument("\"proto\" must be tcp or udp");
  rule.protocol = *protocol;
  const std::uint64_t port = counter_field(object, "mesh_port");
  if (port == 0 || port > 65535) throw std::invalid_argument("\"mesh_port\" must be 1 to 65535");
  rule.mesh_port = static_cast<std::uint16_t>(port);
  auto target = Endpoint::parse(text_field(object, "target", 64));
  if (!target) throw std::invalid_argument("\"target\" must be HOST:PORT");
  rule.target = *target;
  return rule;
}

ForwardStatus forward_from(const json& object) {
  ForwardStatus f;
  f.rule = forward_rule_from(object);
  f.active = bool_field(object, "active");
  f.packets_in = counter_field(object, "packets_in");
  f.packets_out = counter_field(object, "packets_out");
  f.connections = counter_field(object, "connections");
  return f;
}

json forwards_json(const std::vector<ForwardStatus>& forwards) {
  json list = json::array();
  for (const ForwardStatus& f : forwards) list.push_back(forward_json(f));
  return list;
}

std::vector<ForwardStatus> forwards_from(const json& list) {
  if (!list.is_array()) throw std::invalid_argument("\"forwards\" must be a list");
  std::vector<ForwardStatus> out;
  for (const json& item : list) out.push_back(forward_from(item));
  return out;
}

void add_filter_json(json& self, const FilterStatus& filter) {
  const FilterCounters& c = filter.counters;
  self["shields_up"] = filter.shields_up;
  self["forwards"] = forwards_json(filter.forwards);
  self["filter"] = {{"refused_v4", c.refused_v4},         {"refused_v6", c.refused_v6},
                    {"malformed", c.malformed},           {"untracked", c.untracked},
                    {"forwarded_in", c.forwarded_in},     {"forwarded_out", c.forwarded_out}};
  if (const auto& p = filter.policy) {
    json rules = json::array();
    for (const PolicyRuleStatus& r : p->rules)
      rules.push_back({{"name", r.name}, {"accepted_flows", r.accepted_flows}, {"accepted_packets", r.accepted_packets}});
    self["policy"] = {{"in_force", p->in_force}, {"version", p->version},   {"denied", p->denied},
                      {"cut", p->cut},           {"flows", p->flows},       {"rejected_updates", p->rejected_updates},
                      {"rules", std::move(rules)}};
  }
}

std::optional<PolicyStatus> policy_from(const json& self) {
  if (!self.contains("policy")) return std::nullopt;
  const json& p = object_field(self, "policy");
  PolicyStatus out;
  out.in_force = bool_field(p, "in_force");
  out.version = counter_field(p, "version");
  out.denied = counter_field(p, "denied");
  out.cut = counter_field(p, "cut");
  out.flows = counter_field(p, "flows");
  out.rejected_updates = counter_field(p, "rejected_updates");
  const json& rules = field(p, "rules");
  if (!rules.is_array() || rules.size() > 65536) throw std::invalid_argument("\"policy.rules\" must be a list");
  for (const json& r : rules) {
    if (!r.is_object()) throw std::invalid_argument("a policy rule must be an object");
    out.rules.push_back({text_field(r, "name", kMaxShortText), counter_field(r, "accepted_flows"),
                         counter_field(r, "accepted_packets")});
  }
  return out;
}

std::optional<FilterStatus> filter_from(const json& self) {
  if (!self.contains("shields_up")) return std::nullopt;
  FilterStatus filter;
  filter.shields_up = bool_field(self, "shields_up");
  filter.forwards = forwards_from(field(self, "forwards"));
  const json& c = object_field(self, "filter");
  filter.counters.refused_v4 = counter_field(c, "refused_v4");
  filter.counters.refused_v6 = counter_field(c, "refused_v6");
  filter.counters.malformed = counter_field(c, "malformed");
  filter.counters.untracked = counter_field(c, "untracked");
  filter.counters.forwarded_in = counter_field(c, "forwarded_in");
  filter.counters.forwarded_out = counter_field(c, "forwarded_out");
  filter.policy = policy_from(self);
  return filter;
}

SelfStatus self_from(const json& object) {
  SelfStatus self;
  self.name = text_field(object, "name", kMaxShortText);
  self.ipv4 = address_field(object, "ipv4");
  self.ipv6 = address_field(object, "ipv6");
  self.node_key = key_field(object, "node_key");
  const json& endpoints = field(object, "endpoints");
  if (!endpoints.is_array()) throw std::invalid_argument("\"endpoints\" must be a list");
  for (const json& item : endpoints) {
    auto endpoint = item.is_string() ? Endpoint::parse(item.get<std::string>()) : std::nullopt;
    if (!endpoint) throw std::invalid_argument("\"endpoints\" holds something that is not an endpoint");
    self.endpoints.push_back(*endpoint);
  }
  self.nat = nat_from(object_field(object, "nat"));
  self.relay = optional_text(object, "relay", kMaxShortText);
  self.filter = filter_from(object);
  return self;
}

json peer_json(const PeerStatus& peer) {
  json out = {{"name", peer.name},
          {"ipv4", peer.ipv4.to_string()},
          {"ipv6", peer.ipv6.to_string()},
          {"node_key", to_base64(peer.node_key)},
          {"online", peer.online},
          {"path", std::string(to_string(peer.path))},
          {"endpoint", endpoint_or_null(peer.endpoint)},
          {"relay", or_null(peer.relay)},
          {"rtt_ms", or_null(peer.rtt_ms)},
          {"last_handshake", or_null(peer.last_handshake)},
          {"rx_bytes", peer.rx_bytes},
          {"tx_bytes", peer.tx_bytes}};
  // knitd's addition (path MTU discovery): present when known.
  if (peer.path_mtu) out["path_mtu"] = *peer.path_mtu;
  // knitd's addition (subnet routes): present when the peer carries approved routes.
  if (!peer.routes.empty()) {
    out["routes"] = prefixes_json(peer.routes);
    out["routes_accepted"] = peer.routes_accepted;
  }
  return out;
}

PeerStatus peer_from(const json& object) {
  if (!object.is_object()) throw std::invalid_argument("a peer must be an object");
  PeerStatus peer;
  peer.name = text_field(object, "name", kMaxShortText);
  peer.ipv4 = address_field(object, "ipv4");
  peer.ipv6 = address_field(object, "ipv6");
  peer.node_key = key_field(object, "node_key");
  peer.online = bool_field(object, "online");
  auto path = parse_path_kind(text_field(object, "path", 16));
  if (!path) throw std::invalid_argument("\"path\" must be direct, relay or none");
  peer.path = *path;
  peer.endpoint = optional_endpoint(object, "endpoint");
  peer.relay = optional_text(object, "relay", kMaxShortText);
  const json& rtt = field(object, "rtt_ms");
  if (!rtt.is_null()) {
    if (!rtt.is_number() || !std::isfinite(rtt.get<double>()) || rtt.get<double>() < 0)
      throw std::invalid_argument("\"rtt_ms\" must be a number of milliseconds");
    peer.rtt_ms = rtt.get<double>();
  }
  if (object.contains("path_mtu") && !object["path_mtu"].is_null()) {
    const json& mtu = object["path_mtu"];
    if (!mtu.is_number_unsigned() || mtu.get<std::uint64_t>() > 65535)
      throw std::invalid_argument("\"path_mtu\" must be a number of bytes");
    peer.path_mtu = mtu.get<std::uint32_t>();
  }
  const json& handshake = field(object, "last_handshake");
  if (!handshake.is_null()) {
    if (!handshake.is_number_integer()) throw std::invalid_argument("\"last_handshake\" must be unix seconds");
    peer.last_handshake = handshake.get<std::int64_t>();
  }
  peer.rx_bytes = counter_field(object, "rx_bytes");
  peer.tx_bytes = counter_field(object, "tx_bytes");
  if (object.contains("routes")) peer.routes = prefixes_from(object["routes"], "routes");
  if (object.contains("routes_accepted")) peer.routes_accepted = bool_field(object, "routes_accepted");
  return peer;
}

json status_json(const StatusReport& status) {
  json peers = json::array();
  for (const PeerStatus& peer : status.peers) peers.push_back(peer_json(peer));
  json self = self_json(status.self);
  if (status.self.filter) add_filter_json(self, *status.self.filter);
  if (status.self.mtu) self["mtu"] = *status.self.mtu;
  if (status.self.routes) self["routes"] = route_settings_json(*status.self.routes);
  if (status.self.exit_node) self["exit_node"] = exit_node_json(*status.self.exit_node);
  return {{"self", self}, {"peers", peers}};
}

StatusReport status_from(const json& object) {
  StatusReport status;
  status.self = self_from(object_field(object, "self"));
  if (const json& self = object_field(object, "self"); self.contains("mtu") && !self["mtu"].is_null()) {
    if (!self["mtu"].is_number_unsigned() || self["mtu"].get<std::uint64_t>() > 65535)
      throw std::invalid_argument("\"mtu\" must be a number of bytes");
    status.self.mtu = self["mtu"].get<std::uint32_t>();
  }
  if (const json& self = object_field(object, "self"); self.contains("routes"))
    status.self.routes = route_settings_from(self["routes"]);
  if (const json& self = object_field(object, "self"); self.contains("exit_node") && !self["exit_node"].is_null())
    status.self.exit_node = exit_node_from(self["exit_node"]);
  const json& peers = field(object, "peers");
  if (!peers.is_array()) throw std::invalid_argument("\"peers\" must be a list");
  for (const json& item : peers) status.peers.push_back(peer_from(item));
  return status;
}

// Parses a line into an object, or says why not.
std::optional<json> parse_object(std::string_view line, std::size_t max, std::string& why) {
  if (line.size() > max) {
    why = "the line is too long";
    return std::nullopt;
  }
  if (!nesting_ok(line)) {
    why = "the JSON is nested too deeply";
    return std::nullopt;
  }
  json doc = json::parse(line.begin(), line.end(), nullptr, false);
  if (doc.is_discarded()) {
    why = "not JSON";
    return std::nullopt;
  }
  if (!doc.is_object()) {
    why = "not a JSON object";
    return std::nullopt;
  }
  return doc;
}

}  // namespace

// ---------------------------------------------------------------- requests

std::string encode_request(const ControlRequest& request) {
  json doc = std::visit(
      [](const auto& r) -> json {
        using T = std::decay_t<decltype(r)>;
        if constexpr (std::is_same_v<T, UpRequest>) {
          json out = {{"cmd", "up"}};
          if (!r.token.empty()) out["token"] = r.token;
          if (!r.hostname.empty()) out["hostname"] = r.hostname;
          return out;
        } else if constexpr (std::is_same_v<T, DownRequest>) {
          return {{"cmd", "down"}};
        } else if constexpr (std::is_same_v<T, LogoutRequest>) {
          return {{"cmd", "logout"}};
        } else if constexpr (std::is_same_v<T, StatusRequest>) {
          return {{"cmd", "status"}};
        } else if constexpr (std::is_same_v<T, IpRequest>) {
          return {{"cmd", "ip"}};
        } else if constexpr (std::is_same_v<T, PingInfoRequest>) {
          return {{"cmd", "ping-info"}, {"peer", r.peer}};
        } else if constexpr (std::is_same_v<T, SetRequest>) {
          json out = {{"cmd", "set"}};
          if (r.shields_up) out["shields_up"] = *r.shields_up;
          if (r.accept_dns) out["accept_dns"] = *r.accept_dns;
          if (r.manage_resolv_conf) out["manage_resolv_conf"] = *r.manage_resolv_conf;
          if (r.operator_user) out["operator"] = *r.operator_user;
          return out;
        } else if constexpr (std::is_same_v<T, ForwardAddRequest>) {
          return {{"cmd", "forward-add"},
                  {"proto", std::string(to_string(r.rule.protocol))},
                  {"mesh_port", r.rule.mesh_port},
                  {"target", r.rule.target.to_string()}};
        } else if constexpr (std::is_same_v<T, ForwardRemoveRequest>) {
          return {{"cmd", "forward-remove"},
                  {"proto", std::string(to_string(r.protocol))},
                  {"mesh_port", r.mesh_port}};
        } else if constexpr (std::is_same_v<T, ForwardListRequest>) {
          return {{"cmd", "forward-list"}};
        } else if constexpr (std::is_same_v<T, NetcheckRequest>) {
          return {{"cmd", "netcheck"}};
        } else if constexpr (std::is_same_v<T, DnsStatusRequest>) {
          return {{"cmd", "dns-status"}};
        } else if constexpr (std::is_same_v<T, RoutesRequest>) {
          json out = {{"cmd", "routes"}};
          if (r.advertise_routes) out["advertise_routes"] = prefixes_json(*r.advertise_routes);
          if (r.advertise_exit_node) out["advertise_exit_node"] = *r.advertise_exit_node;
          if (r.accept_routes) out["accept_routes"] = *r.accept_routes;
          if (r.snat_routes) out["snat_routes"] = *r.snat_routes;
          if (r.exit_node) out["exit_node"] = *r.exit_node;
          if (r.exit_node_allow_lan) out["exit_node_allow_lan"] = *r.exit_node_allow_lan;
          return out;
        } else if constexpr (std::is_same_v<T, PolicyDebugRequest>) {
          return {{"cmd", "policy-debug"}};
        } else if constexpr (std::is_same_v<T, NatRequest>) {
          return {{"cmd", "nat"}};
        } else {
          return {{"cmd", "version"}};
        }
      },
      request);
  return dump(doc);
}

std::variant<ControlRequest, ProtocolError> parse_request(std::string_view line) {
  std::string why;
  auto doc = parse_object(line, kMaxRequestLine, why);
  if (!doc) return ProtocolError{"bad request: " + why};
  try {
    const std::string cmd = text_field(*doc, "cmd", 32);
    if (cmd == "up") {
      UpRequest up;
      up.token = text_field(*doc, "token", kMaxTokenText, false);
      up.hostname = text_field(*doc, "hostname", kMaxShortText, false);
      return ControlRequest{std::move(up)};
    }
    if (cmd == "down") return ControlRequest{DownRequest{}};
    if (cmd == "logout") return ControlRequest{LogoutRequest{}};
    if (cmd == "status") return ControlRequest{StatusRequest{}};
    if (cmd == "ip") return ControlRequest{IpRequest{}};
    if (cmd == "ping-info") {
      PingInfoRequest ping{text_field(*doc, "peer", kMaxPeerQuery)};
      if (ping.peer.empty()) throw std::invalid_argument("\"peer\" is empty");
      return ControlRequest{std::move(ping)};
    }
    if (cmd == "version") return ControlRequest{VersionRequest{}};
    if (cmd == "set") {
      SetRequest set;
      if (doc->contains("shields_up")) set.shields_up = bool_field(*doc, "shields_up");
      if (doc->contains("accept_dns")) set.accept_dns = bool_field(*doc, "accept_dns");
      if (doc->contains("manage_resolv_conf")) set.manage_resolv_conf = bool_field(*doc, "manage_resolv_conf");
      if (doc->contains("operator")) set.operator_user = text_field(*doc, "operator", kMaxUserName, false);
      return ControlRequest{set};
    }
    if (cmd == "forward-add") return ControlRequest{ForwardAddRequest{forward_rule_from(*doc)}};
    if (cmd == "forward-remove") {
      auto protocol = parse_forward_protocol(text_field(*doc, "proto", 8));
      if (!protocol) throw std::invalid_argument("\"proto\" must be tcp or udp");
      const std::uint64_t port = counter_field(*doc, "mesh_port");
      if (port == 0 || port > 65535) throw std::invalid_argument("\"mesh_port\" must be 1 to 65535");
      return ControlRequest{ForwardRemoveRequest{*protocol, static_cast<std::uint16_t>(port)}};
    }
    if (cmd == "forward-list") return ControlRequest{ForwardListRequest{}};
    if (cmd == "netcheck") return ControlRequest{NetcheckRequest{}};
    if (cmd == "dns-status") return ControlRequest{DnsStatusRequest{}};
    if (cmd == "routes") {
      RoutesRequest routes;
      if (doc->contains("advertise_routes"))
        routes.advertise_routes = prefixes_from((*doc)["advertise_routes"], "advertise_routes");
      if (doc->contains("advertise_exit_node")) routes.advertise_exit_node = bool_field(*doc, "advertise_exit_node");
      if (doc->contains("accept_routes")) routes.accept_routes = bool_field(*doc, "accept_routes");
      if (doc->contains("snat_routes")) routes.snat_routes = bool_field(*doc, "snat_routes");
      if (doc->contains("exit_node")) routes.exit_node = text_field(*doc, "exit_node", kMaxShortText, false);
      if (doc->contains("exit_node_allow_lan")) routes.exit_node_allow_lan = bool_field(*doc, "exit_node_allow_lan");
      return ControlRequest{std::move(routes)};
    }
    if (cmd == "policy-debug") return ControlRequest{PolicyDebugRequest{}};
    if (cmd == "nat") return ControlRequest{NatRequest{}};
    return ProtocolError{"bad request: unknown command \"" + cmd + "\" (knit and knitd of different versions?)"};
  } catch (const std::exception& e) {
    return ProtocolError{std::string("bad request: ") + e.what()};
  }
}

// ---------------------------------------------------------------- answers

std::string encode_response(const ControlResponse& response) {
  json doc = std::visit(
      [](const auto& r) -> json {
        using T = std::decay_t<decltype(r)>;
        if constexpr (std::is_same_v<T, ErrorReply>) {
          return {{"ok", false}, {"error", r.message}};
        } else if constexpr (std::is_same_v<T, UpReply>) {
          return {{"ok", true}, {"cmd", "up"}, {"name", r.name}, {"ipv4", r.ipv4.to_string()},
                  {"ipv6", r.ipv6.to_string()}, {"already_joined", r.already_joined}};
        } else if constexpr (std::is_same_v<T, DownReply>) {
          return {{"ok", true}, {"cmd", "down"}, {"was_joined", r.was_joined}};
        } else if constexpr (std::is_same_v<T, LogoutReply>) {
          return {{"ok", true},           {"cmd", "logout"},   {"was_member", r.was_member},
                  {"coordinator_told", r.coordinator_told}, {"name", r.name}, {"detail", r.detail}};
        } else if constexpr (std::is_same_v<T, StatusReply>) {
          return {{"ok", true},
                  {"cmd", "status"},
                  {"status", status_json(r.status)},
                  {"coordinator",
                   {{"state", r.coordinator.state},
                    {"address", r.coordinator.address},
                    {"error", r.coordinator.error}}}};
        } else if constexpr (std::is_same_v<T, IpReply>) {
          return {{"ok", true}, {"cmd", "ip"}, {"ipv4", r.ipv4.to_string()}, {"ipv6", r.ipv6.to_string()}};
        } else if constexpr (std::is_same_v<T, PingInfoReply>) {
          return {{"ok", true}, {"cmd", "ping-info"}, {"peer", peer_json(r.peer)}};
        } else if constexpr (std::is_same_v<T, SetReply>) {
          json out = {{"ok", true}, {"cmd", "set"}, {"shields_up", r.shields_up}};
          if (r.accept_dns) out["accept_dns"] = *r.accept_dns;
          if (r.manage_resolv_conf) out["manage_resolv_conf"] = *r.manage_resolv_conf;
          if (r.operator_user) out["operator"] = *r.operator_user;
          return out;
        } else if constexpr (std::is_same_v<T, ForwardsReply>) {
          return {{"ok", true}, {"cmd", "forwards"}, {"forwards", forwards_json(r.forwards)}};
        } else if constexpr (std::is_same_v<T, NetcheckReply>) {
          return {{"ok", true}, {"cmd", "netcheck"}, {"netcheck", netcheck_json(r)}};
        } else if constexpr (std::is_same_v<T, DnsStatusReply>) {
          return {{"ok", true}, {"cmd", "dns-status"}, {"dns", dns_json(r.dns)}};
        } else if constexpr (std::is_same_v<T, RoutesReply>) {
          return {{"ok", true}, {"cmd", "routes"}, {"routes", route_settings_json(r.routes)}};
        } else if constexpr (std::is_same_v<T, PolicyDebugReply>) {
          return {{"ok", true}, {"cmd", "policy-debug"}, {"text", r.text}};
        } else if constexpr (std::is_same_v<T, NatReply>) {
          return {{"ok", true}, {"cmd", "nat"}, {"nat", snat_json(r.nat)}};
        } else {
          return {{"ok", true}, {"cmd", "version"}, {"version", r.version}};
        }
      },
      response);
  return dump(doc);
}

std::variant<ControlResponse, ProtocolError> parse_response(std::string_view line) {
  std::string why;
  auto doc = parse_object(line, kMaxResponseLine, why);
  if (!doc) return ProtocolError{"knitd sent a bad answer: " + why};
  try {
    if (!bool_field(*doc, "ok")) return ControlResponse{ErrorReply{text_field(*doc, "error", 64 * 1024)}};
    const std::string cmd = text_field(*doc, "cmd", 32);
    if (cmd == "up") {
      return ControlResponse{UpReply{text_field(*doc, "name", kMaxShortText), address_field(*doc, "ipv4"),
                                     address_field(*doc, "ipv6"), bool_field(*doc, "already_joined")}};
    }
    if (cmd == "down") return ControlResponse{DownReply{bool_field(*doc, "was_joined")}};
    if (cmd == "logout") {
      return ControlResponse{LogoutReply{bool_field(*doc, "was_member"), bool_field(*doc, "coordinator_told"),
                                         text_field(*doc, "name", kMaxShortText, false),
                                         text_field(*doc, "detail", 64 * 1024, false)}};
    }
    if (cmd == "status") {
      StatusReply reply;
      reply.status = status_from(object_field(*doc, "status"));
      const json& coordinator = object_field(*doc, "coordinator");
      reply.coordinator.state = text_field(coordinator, "state", 32);
      reply.coordinator.address = text_field(coordinator, "address", 512);
      reply.coordinator.error = text_field(coordinator, "error", 64 * 1024);
      return ControlResponse{std::move(reply)};
    }
    if (cmd == "ip") return ControlResponse{IpReply{address_field(*doc, "ipv4"), address_field(*doc, "ipv6")}};
    if (cmd == "ping-info") return ControlResponse{PingInfoReply{peer_from(object_field(*doc, "peer"))}};
    if (cmd == "version") return ControlResponse{VersionReply{text_field(*doc, "version", 64)}};
    if (cmd == "set") {
      SetReply set{bool_field(*doc, "shields_up"), std::nullopt, std::nullopt, std::nullopt};
      if (doc->contains("accept_dns")) set.accept_dns = bool_field(*doc, "accept_dns");
      if (doc->contains("manage_resolv_conf")) set.manage_resolv_conf = bool_field(*doc, "manage_resolv_conf");
      if (doc->contains("operator")) set.operator_user = text_field(*doc, "operator", kMaxUserName, false);
      return ControlResponse{set};
    }
    if (cmd == "dns-status") return ControlResponse{DnsStatusReply{dns_from(object_field(*doc, "dns"))}};
    if (cmd == "routes") return ControlResponse{RoutesReply{route_settings_from(object_field(*doc, "routes"))}};
    if (cmd == "policy-debug") return ControlResponse{PolicyDebugReply{text_field(*doc, "text", kMaxResponseLine)}};
    if (cmd == "nat") return ControlResponse{NatReply{snat_from(object_field(*doc, "nat"))}};
    if (cmd == "forwards") return ControlResponse{ForwardsReply{forwards_from(field(*doc, "forwards"))}};
    if (cmd == "netcheck") return ControlResponse{netcheck_from(object_field(*doc, "netcheck"))};
    return ProtocolError{"knitd sent an answer this knit does not know (\"" + cmd + "\"): are knit and knitd the same version?"};
  } catch (const std::exception& e) {
    return ProtocolError{std::string("knitd sent a bad answer: ") + e.what()};
  }
}

std::string encode_status(const StatusReport& status, int indent) { return dump(status_json(status), indent); }

std::string encode_peer(const PeerStatus& peer, int indent) { return dump(peer_json(peer), indent); }

std::string encode_dns_status(const DnsStatus& dns, int indent) { return dump(dns_json(dns), indent); }

std::string encode_netcheck(const NetcheckReply& netcheck, int indent) {
  return dump(netcheck_json(netcheck), indent);
}

std::string encode_snat(const SnatStatus& snat, int indent) { return dump(snat_json(snat), indent); }

std::string encode_forwards(const std::vector<ForwardStatus>& forwards, int indent) {
  return dump(forwards_json(forwards), indent);
}

}  // namespace knit::localapi
