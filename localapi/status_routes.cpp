#include "localapi/status_routes.hpp"

namespace knit::localapi::detail {
namespace {

std::vector<RouteCarrierStatus> route_carriers_from(const json& list) {
  if (!list.is_array() || list.size() > 256) throw std::invalid_argument("\"carriers\" must be a list");
  std::vector<RouteCarrierStatus> out;
  for (const json& item : list) {
    if (!item.is_object()) throw std::invalid_argument("a route carrier must be an object");
    RouteCarrierStatus c;
    auto prefix = IpPrefix::parse(text_field(item, "prefix", 64));
    if (!prefix) throw std::invalid_argument("\"prefix\" must be a CIDR prefix");
    c.prefix = *prefix;
    c.via = text_field(item, "via", kMaxShortText, false);
    const json& candidates = field(item, "candidates");
    if (!candidates.is_array() || candidates.size() > 256) throw std::invalid_argument("\"candidates\" must be a list");
    for (const json& k : candidates) {
      if (!k.is_object()) throw std::invalid_argument("a candidate must be an object");
      RouteCarrierCandidate candidate;
      candidate.name = text_field(k, "name", kMaxShortText, false);
      candidate.node_key = key_field(k, "node_key");
      candidate.state = text_field(k, "state", 32);
      candidate.reason = text_field(k, "reason", kMaxShortText, false);
      if (k.contains("silent_ms") && !k["silent_ms"].is_null()) {
        if (!k["silent_ms"].is_number_integer()) throw std::invalid_argument("\"silent_ms\" must be a number");
        candidate.silent_ms = k["silent_ms"].get<std::int64_t>();
      }
      c.candidates.push_back(std::move(candidate));
    }
    out.push_back(std::move(c));
  }
  return out;
}

}  // namespace

json prefixes_json(const std::vector<IpPrefix>& list) {
  json out = json::array();
  for (const IpPrefix& p : list) out.push_back(p.to_string());
  return out;
}

std::vector<IpPrefix> prefixes_from(const json& list, const char* name) {
  if (!list.is_array() || list.size() > 256) throw std::invalid_argument(std::string("\"") + name + "\" must be a list of CIDR prefixes");
  std::vector<IpPrefix> out;
  for (const json& item : list) {
    auto p = item.is_string() ? IpPrefix::parse(item.get<std::string>()) : std::nullopt;
    if (!p) throw std::invalid_argument(std::string("\"") + name + "\" holds something that is not a CIDR prefix");
    out.push_back(*p);
  }
  return out;
}

json snat_json(const SnatStatus& s) {
  json egress = json::object();
  for (const auto& [prefix, address] : s.egress) egress[prefix] = address;
  json counters = json::object();
  for (const auto& [name, value] : s.counters) counters[name] = value;
  json out = {{"enabled", s.enabled}, {"active", s.active}, {"ports", s.ports}, {"egress", egress},
              {"problem", s.problem}, {"counters", counters}};
  if (!s.entries.empty()) {
    json entries = json::array();
    for (const SnatEntry& e : s.entries) {
      entries.push_back({{"protocol", e.protocol}, {"internal", e.internal}, {"external", e.external},
                         {"remote", e.remote}, {"state", e.state}, {"expires_in", e.expires_in},
                         {"idle", e.idle}});
    }
    out["entries"] = std::move(entries);
  }
  return out;
}

SnatStatus snat_from(const json& object) {
  if (!object.is_object()) throw std::invalid_argument("\"snat\" must be an object");
  SnatStatus s;
  s.enabled = bool_field(object, "enabled");
  s.active = bool_field(object, "active");
  s.ports = text_field(object, "ports", 32, false);
  s.problem = text_field(object, "problem", 4096, false);
  const json& egress = field(object, "egress");
  if (!egress.is_object() || egress.size() > 256) throw std::invalid_argument("\"egress\" must be an object");
  for (const auto& [prefix, address] : egress.items()) {
    if (prefix.size() > 64 || !address.is_string() || address.get<std::string>().size() > 64)
      throw std::invalid_argument("bad egress entry");
    s.egress[prefix] = address.get<std::string>();
  }
  const json& counters = field(object, "counters");
  if (!counters.is_object() || counters.size() > 64) throw std::invalid_argument("\"counters\" must be an object");
  for (const auto& [name, value] : counters.items()) {
    if (!value.is_number_unsigned() || name.size() > kMaxShortText) throw std::invalid_argument("bad counter");
    s.counters[name] = value.get<std::uint64_t>();
  }
  if (object.contains("entries")) {
    const json& entries = field(object, "entries");
    if (!entries.is_array() || entries.size() > 1000000) throw std::invalid_argument("\"entries\" must be a list");
    for (const json& e : entries) {
      if (!e.is_object()) throw std::invalid_argument("bad entry");
      SnatEntry entry;
      entry.protocol = text_field(e, "protocol", 8);
      entry.internal = text_field(e, "internal", 64);
      entry.external = text_field(e, "external", 64);
      entry.remote = text_field(e, "remote", 64);
      entry.state = text_field(e, "state", 32, false);
      const json& expires = field(e, "expires_in");
      if (!expires.is_number_integer()) throw std::invalid_argument("\"expires_in\" must be a number");
      entry.expires_in = expires.get<std::int64_t>();
      if (e.contains("idle")) {
        const json& idle = field(e, "idle");
        if (!idle.is_number_integer()) throw std::invalid_argument("\"idle\" must be a number");
        entry.idle = idle.get<std::int64_t>();
      }
      s.entries.push_back(std::move(entry));
    }
  }
  return s;
}

json route_settings_json(const RouteSettingsStatus& r) {
  json out = {{"advertised", prefixes_json(r.advertised)}, {"exit_node", r.exit_node}, {"accept", r.accept},
              {"dropped_source", r.dropped_source}, {"use_exit_node", r.use_exit},
              {"exit_node_allow_lan", r.exit_allow_lan}};
  if (r.snat) out["snat"] = snat_json(*r.snat);
  if (!r.carriers.empty()) {
    json carriers = json::array();
    for (const RouteCarrierStatus& c : r.carriers) {
      json candidates = json::array();
      for (const RouteCarrierCandidate& k : c.candidates)
        candidates.push_back({{"name", k.name}, {"node_key", to_base64(k.node_key)}, {"state", k.state},
                              {"reason", k.reason}, {"silent_ms", or_null(k.silent_ms)}});
      carriers.push_back({{"prefix", c.prefix.to_string()}, {"via", c.via}, {"candidates", candidates}});
    }
    out["carriers"] = carriers;
  }
  return out;
}


json exit_node_json(const ExitNodeStatus& e) {
  return {{"name", e.name}, {"ip", e.ip ? json(e.ip->to_string()) : json(nullptr)}, {"active", e.active},
          {"allow_lan", e.allow_lan}, {"state", e.state}};
}

ExitNodeStatus exit_node_from(const json& object) {
  if (!object.is_object()) throw std::invalid_argument("\"exit_node\" must be an object");
  ExitNodeStatus e;
  e.name = text_field(object, "name", kMaxShortText, false);
  if (object.contains("ip") && !object["ip"].is_null()) e.ip = address_field(object, "ip");
  e.active = bool_field(object, "active");
  if (object.contains("allow_lan")) e.allow_lan = bool_field(object, "allow_lan");
  e.state = text_field(object, "state", kMaxShortText, false);
  return e;
}

RouteSettingsStatus route_settings_from(const json& object) {
  if (!object.is_object()) throw std::invalid_argument("\"routes\" must be an object");
  RouteSettingsStatus r;
  r.advertised = prefixes_from(field(object, "advertised"), "advertised");
  r.exit_node = bool_field(object, "exit_node");
  r.accept = bool_field(object, "accept");
  if (object.contains("dropped_source")) r.dropped_source = counter_field(object, "dropped_source");
  if (object.contains("snat")) r.snat = snat_from(object["snat"]);
  r.use_exit = text_field(object, "use_exit_node", kMaxShortText, false);
  if (object.contains("exit_node_allow_lan")) r.exit_allow_lan = bool_field(object, "exit_node_allow_lan");
  if (object.contains("carriers")) r.carriers = route_carriers_from(object["carriers"]);
  return r;
}

}  // namespace knit::localapi::detail
