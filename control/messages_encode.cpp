// Structs to JSON text. The inverse of messages_parse.cpp, field for field.
#include <nlohmann/json.hpp>

#include "base/bytes.hpp"
#include "control/constants.hpp"
#include "control/messages.hpp"

namespace knit::control {
namespace {

using Json = nlohmann::ordered_json;  // "v" and "type" first, for whoever reads a capture

std::string key_text(const wg::PublicKey& key) { return to_base64(key); }

Json endpoints_json(const std::vector<Endpoint>& endpoints) {
  Json out = Json::array();
  for (const Endpoint& endpoint : endpoints) out.push_back(endpoint.to_string());
  return out;
}

Json host_ports_json(const std::vector<HostPort>& addresses) {
  Json out = Json::array();
  for (const HostPort& address : addresses) out.push_back(address.to_string());
  return out;
}

Json header(std::string_view type) {
  Json out = Json::object();
  out["v"] = kMessageVersion;
  out["type"] = type;
  return out;
}

std::string text(const Json& message) {
  return message.dump(-1, ' ', false, nlohmann::detail::error_handler_t::replace);
}

}  // namespace

std::string_view to_string(NatFiltering filtering) {
  switch (filtering) {
    case NatFiltering::eif:
      return "eif";
    case NatFiltering::adf:
      return "adf";
    case NatFiltering::apdf:
      return "apdf";
    case NatFiltering::unknown:
      break;
  }
  return "unknown";
}

std::string encode(const RegisterRequest& message) {
  Json out = header("register");
  if (message.token) out["token"] = *message.token;
  out["disco_key"] = key_text(message.disco_key);
  out["hostname"] = message.hostname;
  out["os"] = message.os;
  out["endpoints"] = endpoints_json(message.endpoints);
  out["version"] = message.version;
  if (!message.features.empty()) out["features"] = message.features;
  return text(out);
}

std::string encode(const EndpointUpdate& message) {
  Json out = header("endpoint_update");
  out["endpoints"] = endpoints_json(message.endpoints);
  return text(out);
}

std::string encode(const Ping& message) {
  Json out = header("ping");
  out["seq"] = message.seq;
  return text(out);
}

std::string encode(const NatReport& message) {
  Json out = header("nat_report");
  out["udp"] = message.udp;
  if (message.public_v4) out["public_v4"] = message.public_v4->to_string();
  if (message.public_v6) out["public_v6"] = message.public_v6->to_string();
  out["mapping_varies"] = message.mapping_varies;
  out["filtering"] = to_string(message.filtering);
  Json latency = Json::object();
  for (const auto& [relay, ms] : message.relay_latency_ms) latency[relay] = ms;
  out["relay_latency_ms"] = std::move(latency);
  return text(out);
}

namespace {

Json node_json(const NodeAssignment& assignment) {
  Json node = Json::object();
  node["name"] = assignment.name;
  node["ipv4"] = assignment.ipv4.to_string();
  node["ipv6"] = assignment.ipv6.to_string();
  node["node_key"] = key_text(assignment.node_key);
  return node;
}

}  // namespace

std::string encode(const RegisterResponse& message) {
  Json out = header("register_response");
  out["ok"] = message.ok;
  if (!message.ok) {
    out["error_code"] = to_string(message.error_code);
    out["error_message"] = message.error_message;
    return text(out);
  }
  out["node"] = node_json(message.node);
  Json mesh = Json::object();
  mesh["ipv4_prefix"] = message.mesh.ipv4_prefix.to_string();
  mesh["ipv6_prefix"] = message.mesh.ipv6_prefix.to_string();
  out["mesh"] = std::move(mesh);
  if (!message.features.empty()) out["features"] = message.features;
  return text(out);
}

std::string encode(const RelayMap& message) {
  Json out = header("relay_map");
  Json relays = Json::array();
  for (const RelayInfo& relay : message.relays) {
    Json entry = Json::object();
    entry["name"] = relay.name;
    entry["node_key"] = key_text(relay.node_key);
    entry["addresses"] = host_ports_json(relay.addresses);
    entry["stun_port"] = relay.stun_port;
    relays.push_back(std::move(entry));
  }
  out["relays"] = std::move(relays);
  return text(out);
}

std::string encode(const DnsConfig& message) {
  Json out = header("dns_config");
  out["domain"] = message.domain;
  Json split = Json::array();
  for (const SplitDns& entry : message.split) {
    Json item = Json::object();
    item["domain"] = entry.domain;
    item["resolvers"] = endpoints_json(entry.resolvers);
    split.push_back(std::move(item));
  }
  out["split"] = std::move(split);
  return text(out);
}

std::string encode(const Pong& message) {
  Json out = header("pong");
  out["seq"] = message.seq;
  return text(out);
}

std::string encode(const ErrorMessage& message) {
  Json out = header("error");
  out["code"] = to_string(message.code);
  out["message"] = message.message;
  return text(out);
}

std::string encode(const RelayRegister& message) {
  Json out = header("relay_register");
  if (message.token) out["token"] = *message.token;
  out["name"] = message.name;
  out["addresses"] = host_ports_json(message.addresses);
  out["stun_port"] = message.stun_port;
  out["version"] = message.version;
  return text(out);
}

std::string encode(const RelayRegisterResponse& message) {
  Json out = header("relay_register_response");
  out["ok"] = message.ok;
  if (!message.ok) {
    out["error_code"] = to_string(message.error_code);
    out["error_message"] = message.error_message;
  } else {
    out["name"] = message.name;
  }
  return text(out);
}

std::string encode(const Logout&) { return text(header("logout")); }

std::string encode(const SelfUpdate& message) {
  Json out = header("self_update");
  out["node"] = node_json(message.node);
  return text(out);
}

std::string encode(const RouteAdvertise& message) {
  Json out = header("route_advertise");
  Json routes = Json::array();
  for (const IpPrefix& route : message.routes) routes.push_back(route.to_string());
  out["routes"] = std::move(routes);
  out["exit_node"] = message.exit_node;
  return text(out);
}

std::string encode(const Message& message) {
  return std::visit([](const auto& m) { return encode(m); }, message);
}

}  // namespace knit::control
