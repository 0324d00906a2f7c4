// JSON text to validated structs. Every byte here came from the network: each field's type,
// length, family and bound is checked, and the first problem is reported with where it was.
#include <algorithm>
#include <limits>
#include <nlohmann/json.hpp>

#include "base/bytes.hpp"
#include "control/constants.hpp"
#include "control/messages.hpp"
#include "control/peer_codec.hpp"

namespace knit::control {
namespace {

using Json = nlohmann::json;

// Where in the message a value sits, built into text only when something is wrong there.
struct Path {
  const Path* parent = nullptr;
  std::string_view key;
  std::size_t index = 0;
  bool is_index = false;

  Path field(std::string_view name) const { return Path{this, name, 0, false}; }
  Path at(std::size_t i) const { return Path{this, {}, i, true}; }
  std::string str() const {
    std::string out = parent != nullptr ? parent->str() : std::string();
    if (is_index) {
      out += '[' + std::to_string(index) + ']';
    } else if (!key.empty()) {
      if (!out.empty()) out += '.';
      out += key;
    }
    return out;
  }
};

class Parser {
 public:
  bool fail(MessageError kind, const Path& where) {
    if (!error_) error_ = ParseError{kind, where.str()};
    return false;
  }
  ParseError take_error() { return error_.value_or(ParseError{}); }

 private:
  std::optional<ParseError> error_;
};

// ---- text rules ----

bool printable(std::string_view s) {
  return std::none_of(s.begin(), s.end(), [](char c) {
    const auto b = static_cast<unsigned char>(c);
    return b < 0x20 || b == 0x7f;
  });
}

bool name_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
         c == '_';
}

bool valid_name(std::string_view s) {
  return !s.empty() && s.size() <= kMaxNameLength && std::all_of(s.begin(), s.end(), name_char);
}

bool token_text(std::string_view s) {
  return std::all_of(s.begin(), s.end(), [](char c) { return c > 0x20 && c < 0x7f; });
}

// ---- value readers: (parser, value, where, out) -> false after recording an error ----

bool read_string(Parser& p, const Json& v, const Path& at, std::string& out, std::size_t min,
                 std::size_t max, bool (*rule)(std::string_view)) {
  if (!v.is_string()) return p.fail(MessageError::wrong_type, at);
  const auto& s = v.get_ref<const std::string&>();
  if (s.size() > max) return p.fail(MessageError::too_long, at);
  if (s.size() < min || !rule(s)) return p.fail(MessageError::bad_value, at);
  out = s;
  return true;
}

bool read_name(Parser& p, const Json& v, const Path& at, std::string& out) {
  return read_string(p, v, at, out, 1, kMaxNameLength, valid_name);
}

// A string of at most `max` characters, checked as a whole by the caller.
const std::string* short_string(Parser& p, const Json& v, const Path& at, std::size_t max) {
  if (!v.is_string()) {
    p.fail(MessageError::wrong_type, at);
    return nullptr;
  }
  const auto& s = v.get_ref<const std::string&>();
  if (s.size() > max) {
    p.fail(MessageError::too_long, at);
    return nullptr;
  }
  return &s;
}

bool read_key(Parser& p, const Json& v, const Path& at, wg::PublicKey& out) {
  const std::string* s = short_string(p, v, at, 64);
  if (s == nullptr) return false;
  const auto bytes = from_base64(*s);
  if (!bytes || bytes->size() != out.size()) return p.fail(MessageError::bad_value, at);
  if (to_base64(*bytes) != *s) return p.fail(MessageError::bad_value, at);  // one spelling only
  if (std::all_of(bytes->begin(), bytes->end(), [](std::uint8_t b) { return b == 0; })) {
    return p.fail(MessageError::bad_value, at);
  }
  std::copy(bytes->begin(), bytes->end(), out.begin());
  return true;
}

enum class Family { any, v4, v6 };

bool family_matches(const IpAddress& address, Family family) {
  return family == Family::any || (family == Family::v4 && address.is_v4()) ||
         (family == Family::v6 && address.is_v6());
}

bool read_endpoint(Parser& p, const Json& v, const Path& at, Endpoint& out,
                   Family family = Family::any) {
  const std::string* s = short_string(p, v, at, 64);
  if (s == nullptr) return false;
  if (s->find('%') != std::string::npos) return p.fail(MessageError::bad_value, at);
  const auto endpoint = Endpoint::parse(*s);
  if (!endpoint || endpoint->port() == 0 || endpoint->address().is_unspecified() ||
      !family_matches(endpoint->address(), family)) {
    return p.fail(MessageError::bad_value, at);
  }
  out = *endpoint;
  return true;
}

bool read_ip(Parser& p, const Json& v, const Path& at, IpAddress& out, Family family) {
  const std::string* s = short_string(p, v, at, 64);
  if (s == nullptr) return false;
  const auto address = IpAddress::parse(*s);
  if (!address || !family_matches(*address, family)) return p.fail(MessageError::bad_value, at);
  out = *address;
  return true;
}

bool host_bits_zero(const IpPrefix& prefix) {
  const std::size_t bits = prefix.address.size() * 8;
  for (std::size_t bit = prefix.length; bit < bits; ++bit) {
    if ((prefix.address.bytes()[bit / 8] >> (7 - bit % 8)) & 1) return false;
  }
  return true;
}

bool read_prefix(Parser& p, const Json& v, const Path& at, IpPrefix& out, Family family) {
  const std::string* s = short_string(p, v, at, 64);
  if (s == nullptr) return false;
  if (s->find('/') == std::string::npos) return p.fail(MessageError::bad_value, at);
  const auto prefix = IpPrefix::parse(*s);
  if (!prefix || !host_bits_zero(*prefix) || !family_matches(prefix->address, family)) {
    return p.fail(MessageError::bad_value, at);
  }
  out = *prefix;
  return true;
}

bool read_host_port(Parser& p, const Json& v, const Path& at, HostPort& out) {
  const std::string* s = short_string(p, v, at, kMaxHostNameLength + 8);
  if (s == nullptr) return false;
  auto parsed = HostPort::parse(*s);
  if (!parsed) return p.fail(MessageError::bad_value, at);
  out = std::move(*parsed);
  return true;
}

bool read_unsigned(Parser& p, const Json& v, const Path& at, std::uint64_t& out,
                   std::uint64_t max = std::numeric_limits<std::uint64_t>::max()) {
  if (!v.is_number_unsigned()) {
    // A negative integer is a number of the right kind with a wrong value.
    return p.fail(v.is_number_integer() ? MessageError::bad_value : MessageError::wrong_type, at);
  }
  const auto value = v.get<std::uint64_t>();
  if (value > max) return p.fail(MessageError::bad_value, at);
  out = value;
  return true;
}

template <typename Int>
bool read_int(Parser& p, const Json& v, const Path& at, Int& out) {
  std::uint64_t value = 0;
  if (!read_unsigned(p, v, at, value,
                     static_cast<std::uint64_t>(std::numeric_limits<Int>::max()))) {
    return false;
  }
  out = static_cast<Int>(value);
  return true;
}

bool read_bool(Parser& p, const Json& v, const Path& at, bool& out) {
  if (!v.is_boolean()) return p.fail(MessageError::wrong_type, at);
  out = v.get<bool>();
  return true;
}

template <typename T, typename Read>
bool read_list(Parser& p, const Json& v, const Path& at, std::size_t max, std::vector<T>& out,
               Read read) {
  if (!v.is_array()) return p.fail(MessageError::wrong_type, at);
  if (v.size() > max) return p.fail(MessageError::too_many, at);
  out.clear();
  out.reserve(v.size());
  for (std::size_t i = 0; i < v.size(); ++i) {
    if (!read(p, v[i], at.at(i), out.emplace_back())) return false;
  }
  return true;
}

// ---- fields ----

// The value of a required field, or null after recording missing_field.
const Json* required(Parser& p, const Json& object, const Path& at, std::string_view name) {
  const auto it = object.find(name);
  if (it == object.end()) {
    p.fail(MessageError::missing_field, at.field(name));
    return nullptr;
  }
  return &*it;
}

// Reads a required field with read(p, value, where, out).
template <typename T, typename Read>
bool field(Parser& p, const Json& object, const Path& at, std::string_view name, T& out,
           Read read) {
  const Json* v = required(p, object, at, name);
  return v != nullptr && read(p, *v, at.field(name), out);
}

// An absent or null field leaves out empty.
template <typename T, typename Read>
bool optional_field(Parser& p, const Json& object, const Path& at, std::string_view name,
                    std::optional<T>& out, Read read) {
  out.reset();
  const auto it = object.find(name);
  if (it == object.end() || it->is_null()) return true;
  return read(p, *it, at.field(name), out.emplace());
}

const Json* object_field(Parser& p, const Json& object, const Path& at, std::string_view name) {
  const Json* v = required(p, object, at, name);
  if (v != nullptr && !v->is_object()) {
    p.fail(MessageError::wrong_type, at.field(name));
    return nullptr;
  }
  return v;
}

// Curried readers, to pass to field() and read_list().
auto text_reader(std::size_t min, std::size_t max, bool (*rule)(std::string_view)) {
  return [=](Parser& p, const Json& v, const Path& at, std::string& out) {
    return read_string(p, v, at, out, min, max, rule);
  };
}
auto ip_reader(Family family) {
  return [=](Parser& p, const Json& v, const Path& at, IpAddress& out) {
    return read_ip(p, v, at, out, family);
  };
}
auto prefix_reader(Family family) {
  return [=](Parser& p, const Json& v, const Path& at, IpPrefix& out) {
    return read_prefix(p, v, at, out, family);
  };
}
auto endpoint_reader(Family family) {
  return [=](Parser& p, const Json& v, const Path& at, Endpoint& out) {
    return read_endpoint(p, v, at, out, family);
  };
}
auto list_reader(std::size_t max, auto read) {
  return [=](Parser& p, const Json& v, const Path& at, auto& out) {
    return read_list(p, v, at, max, out, read);
  };
}
constexpr auto kKey = read_key;
constexpr auto kName = read_name;
constexpr auto kBool = read_bool;
constexpr auto kU64 = [](Parser& p, const Json& v, const Path& at, std::uint64_t& out) {
  return read_unsigned(p, v, at, out);
};

bool domain_text(std::string_view s) { return is_valid_domain(s); }

// Absent or null: none. Unknown feature names are kept (and ignored by whoever reads them).
bool read_features(Parser& p, const Json& v, const Path& at, std::vector<std::string>& out) {
  std::optional<std::vector<std::string>> features;
  if (!optional_field(p, v, at, "features", features,
                      list_reader(kMaxFeatures, text_reader(1, kMaxShortTextLength, valid_name))))
    return false;
  out = features ? std::move(*features) : std::vector<std::string>{};
  return true;
}

bool read_split(Parser& p, const Json& v, const Path& at, SplitDns& out) {
  if (!v.is_object()) return p.fail(MessageError::wrong_type, at);
  if (!field(p, v, at, "domain", out.domain, text_reader(1, kMaxHostNameLength, domain_text)) ||
      !field(p, v, at, "resolvers", out.resolvers,
             list_reader(kMaxSplitResolvers, endpoint_reader(Family::any))))
    return false;
  if (out.resolvers.empty()) return p.fail(MessageError::bad_value, at.field("resolvers"));
  return true;
}

bool read_dns_config(Parser& p, const Json& v, const Path& at, DnsConfig& out) {
  if (!field(p, v, at, "domain", out.domain, text_reader(1, kMaxHostNameLength, domain_text)) ||
      !field(p, v, at, "split", out.split, list_reader(kMaxSplitDomains, read_split)))
    return false;
  std::vector<std::string_view> domains;
  for (const SplitDns& entry : out.split) domains.push_back(entry.domain);
  std::sort(domains.begin(), domains.end());
  if (std::adjacent_find(domains.begin(), domains.end()) != domains.end())
    return p.fail(MessageError::duplicate, at.field("split"));
  return true;
}

// ---- messages ----

bool read_register(Parser& p, const Json& v, const Path& at, RegisterRequest& out) {
  return optional_field(p, v, at, "token", out.token,
                        text_reader(1, kMaxTokenLength, token_text)) &&
         field(p, v, at, "disco_key", out.disco_key, kKey) &&
         field(p, v, at, "hostname", out.hostname, text_reader(1, kMaxHostnameLength, printable)) &&
         field(p, v, at, "os", out.os, text_reader(0, kMaxShortTextLength, printable)) &&
         field(p, v, at, "endpoints", out.endpoints,
               list_reader(kMaxEndpoints, endpoint_reader(Family::any))) &&
         field(p, v, at, "version", out.version, text_reader(0, kMaxShortTextLength, printable)) &&
         read_features(p, v, at, out.features);
}

bool read_endpoint_update(Parser& p, const Json& v, const Path& at, EndpointUpdate& out) {
  return field(p, v, at, "endpoints", out.endpoints,
               list_reader(kMaxEndpoints, endpoint_reader(Family::any)));
}

bool read_route_advertise(Parser& p, const Json& v, const Path& at, RouteAdvertise& out) {
  return field(p, v, at, "routes", out.routes, list_reader(kMaxRoutes, prefix_reader(Family::any))) &&
         field(p, v, at, "exit_node", out.exit_node, kBool);
}

bool read_ping(Parser& p, const Json& v, const Path& at, Ping& out) {
  return field(p, v, at, "seq", out.seq, kU64);
}

bool read_pong(Parser& p, const Json& v, const Path& at, Pong& out) {
  return field(p, v, at, "seq", out.seq, kU64);
}

bool read_filtering(Parser& p, const Json& v, const Path& at, NatFiltering& out) {
  const std::string* s = short_string(p, v, at, 16);
  if (s == nullptr) return false;
  for (NatFiltering f :
       {NatFiltering::unknown, NatFiltering::eif, NatFiltering::adf, NatFiltering::apdf}) {
    if (*s == to_string(f)) {
      out = f;
      return true;
    }
  }
  return p.fail(MessageError::bad_value, at);
}

bool read_latencies(Parser& p, const Json& v, const Path& at,
                    std::map<std::string, std::uint32_t>& out) {
  if (!v.is_object()) return p.fail(MessageError::wrong_type, at);
  if (v.size() > kMaxRelays) return p.fail(MessageError::too_many, at);
  out.clear();
  for (const auto& [relay, ms] : v.items()) {
    const Path where = at.field(relay);
    if (!valid_name(relay)) return p.fail(MessageError::bad_value, where);
    std::uint32_t value = 0;
    if (!read_int<std::uint32_t>(p, ms, where, value)) return false;
    out.emplace(relay, value);
  }
  return true;
}

bool read_nat_report(Parser& p, const Json& v, const Path& at, NatReport& out) {
  return field(p, v, at, "udp", out.udp, kBool) &&
         optional_field(p, v, at, "public_v4", out.public_v4, endpoint_reader(Family::v4)) &&
         optional_field(p, v, at, "public_v6", out.public_v6, endpoint_reader(Family::v6)) &&
         field(p, v, at, "mapping_varies", out.mapping_varies, kBool) &&
         field(p, v, at, "filtering", out.filtering, read_filtering) &&
         field(p, v, at, "relay_latency_ms", out.relay_latency_ms, read_latencies);
}

bool read_error_code(Parser& p, const Json& v, const Path& at, ErrorCode& out) {
  std::string name;
  if (!read_name(p, v, at, name)) return false;
  out = error_code_from_string(name);
  return true;
}

// The error half of a refusal, shared by both register responses.
bool read_refusal(Parser& p, const Json& v, const Path& at, ErrorCode& code,
                  std::string& message) {
  std::optional<std::string> text;
  if (!field(p, v, at, "error_code", code, read_error_code) ||
      !optional_field(p, v, at, "error_message", text,
                      text_reader(0, kMaxErrorTextLength, printable))) {
    return false;
  }
  message = text.value_or("");
  return true;
}

// {node{name, ipv4, ipv6, node_key}} of register_response and self_update.
bool read_node(Parser& p, const Json& v, const Path& at, NodeAssignment& out) {
  const Json* node = object_field(p, v, at, "node");
  if (node == nullptr) return false;
  const Path node_at = at.field("node");
  return field(p, *node, node_at, "name", out.name, kName) &&
         field(p, *node, node_at, "ipv4", out.ipv4, ip_reader(Family::v4)) &&
         field(p, *node, node_at, "ipv6", out.ipv6, ip_reader(Family::v6)) &&
         field(p, *node, node_at, "node_key", out.node_key, kKey);
}

bool read_self_update(Parser& p, const Json& v, const Path& at, SelfUpdate& out) {
  return read_node(p, v, at, out.node);
}

bool read_register_response(Parser& p, const Json& v, const Path& at, RegisterResponse& out) {
  if (!field(p, v, at, "ok", out.ok, kBool)) return false;
  if (!out.ok) return read_refusal(p, v, at, out.error_code, out.error_message);
  if (!read_node(p, v, at, out.node)) return false;
  const Json* mesh = object_field(p, v, at, "mesh");
  if (mesh == nullptr) return false;
  const Path mesh_at = at.field("mesh");
  return field(p, *mesh, mesh_at, "ipv4_prefix", out.mesh.ipv4_prefix, prefix_reader(Family::v4)) &&
         field(p, *mesh, mesh_at, "ipv6_prefix", out.mesh.ipv6_prefix, prefix_reader(Family::v6)) &&
         read_features(p, v, at, out.features);
}

// A relay's addresses: 1..kMaxRelayAddresses of "host:port".
bool read_relay_addresses(Parser& p, const Json& v, const Path& at, std::vector<HostPort>& out) {
  if (!read_list(p, v, at, kMaxRelayAddresses, out, read_host_port)) return false;
  if (out.empty()) return p.fail(MessageError::bad_value, at);
  return true;
}

bool read_relay(Parser& p, const Json& v, const Path& at, RelayInfo& out) {
  if (!v.is_object()) return p.fail(MessageError::wrong_type, at);
  return field(p, v, at, "name", out.name, kName) &&
         field(p, v, at, "node_key", out.node_key, kKey) &&
         field(p, v, at, "addresses", out.addresses, read_relay_addresses) &&
         field(p, v, at, "stun_port", out.stun_port, read_int<std::uint16_t>);
}

bool read_relay_register(Parser& p, const Json& v, const Path& at, RelayRegister& out) {
  return optional_field(p, v, at, "token", out.token,
                        text_reader(1, kMaxTokenLength, token_text)) &&
         field(p, v, at, "name", out.name,
               text_reader(1, kMaxNameLength, is_valid_relay_name)) &&
         field(p, v, at, "addresses", out.addresses, read_relay_addresses) &&
         field(p, v, at, "stun_port", out.stun_port, read_int<std::uint16_t>) &&
         field(p, v, at, "version", out.version, text_reader(0, kMaxShortTextLength, printable));
}

bool read_relay_register_response(Parser& p, const Json& v, const Path& at,
                                  RelayRegisterResponse& out) {
  if (!field(p, v, at, "ok", out.ok, kBool)) return false;
  if (!out.ok) return read_refusal(p, v, at, out.error_code, out.error_message);
  return field(p, v, at, "name", out.name, text_reader(1, kMaxNameLength, is_valid_relay_name));
}

bool read_relay_map(Parser& p, const Json& v, const Path& at, RelayMap& out) {
  if (!field(p, v, at, "relays", out.relays, list_reader(kMaxRelays, read_relay))) return false;
  std::vector<std::string_view> names;
  for (const RelayInfo& relay : out.relays) names.push_back(relay.name);
  std::sort(names.begin(), names.end());
  if (std::adjacent_find(names.begin(), names.end()) != names.end()) {
    return p.fail(MessageError::duplicate, at.field("relays"));
  }
  return true;
}

bool read_error(Parser& p, const Json& v, const Path& at, ErrorMessage& out) {
  return field(p, v, at, "code", out.code, read_error_code) &&
         field(p, v, at, "message", out.message, text_reader(0, kMaxErrorTextLength, printable));
}

template <typename T, typename Read>
ParseResult parse_as(const Json& root, Read read) {
  Parser p;
  T out;
  if (!read(p, root, Path{}, out)) return p.take_error();
  return ParseResult(std::move(out));
}

// Nesting depth before nlohmann builds anything: brackets outside strings.
bool within_depth(std::string_view text, std::size_t max_depth) {
  std::size_t depth = 0;
  bool in_string = false;
  bool escaped = false;
  for (char c : text) {
    if (in_string) {
      if (escaped) {
        escaped = false;
      } else if (c == '\\') {
        escaped = true;
      } else if (c == '"') {
        in_string = false;
      }
    } else if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      if (++depth > max_depth) return false;
    } else if ((c == ']' || c == '}') && depth > 0) {
      --depth;
    }
  }
  return true;
}

}  // namespace

std::string_view to_string(MessageError error) {
  switch (error) {
    case MessageError::too_large:
      return "message too large";
    case MessageError::too_deep:
      return "nested too deeply";
    case MessageError::not_json:
      return "not JSON";
    case MessageError::not_object:
      return "not a JSON object";
    case MessageError::unsupported_version:
      return "unsupported protocol version";
    case MessageError::unknown_type:
      return "unknown message type";
    case MessageError::missing_field:
      return "missing field";
    case MessageError::wrong_type:
      return "wrong type";
    case MessageError::bad_value:
      return "bad value";
    case MessageError::too_many:
      return "too many entries";
    case MessageError::too_long:
      return "too long";
    case MessageError::duplicate:
      return "duplicate entry";
  }
  return "invalid message";
}

bool is_valid_relay_name(std::string_view name) {
  if (name.empty() || name.size() > kMaxNameLength) return false;
  bool after_dash = true;  // no leading '-'
  for (char c : name) {
    if (c == '-') {
      if (after_dash) return false;  // no "--"
      after_dash = true;
    } else if ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9')) {
      after_dash = false;
    } else {
      return false;
    }
  }
  return !after_dash;  // no trailing '-'
}

bool is_valid_domain(std::string_view domain) {
  if (domain.empty() || domain.size() > kMaxHostNameLength) return false;
  std::size_t start = 0;
  while (true) {
    const std::size_t dot = domain.find('.', start);
    const std::string_view label =
        domain.substr(start, dot == std::string_view::npos ? std::string_view::npos : dot - start);
    if (label.empty() || label.size() > kMaxNameLength || label.front() == '-' || label.back() == '-')
      return false;
    for (char c : label)
      if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-')) return false;
    if (dot == std::string_view::npos) return true;
    start = dot + 1;
  }
}

std::string ParseError::describe() const {
  std::string out(to_string(kind));
  if (!field.empty()) out += " in " + field;
  return out;
}

ParseResult parse_message(std::string_view text) {
  if (!text.empty() && static_cast<std::uint8_t>(text[0]) == kBinaryTag) return parse_binary(text);
  if (text.size() > kMaxMessageSize) return ParseError{MessageError::too_large, {}};
  if (!within_depth(text, kMaxJsonDepth)) return ParseError{MessageError::too_deep, {}};
  Json root;
  try {
    root = Json::parse(text.begin(), text.end(), nullptr, /*allow_exceptions=*/false);
  } catch (const nlohmann::json::exception&) {
    return ParseError{MessageError::not_json, {}};
  }
  if (root.is_discarded()) return ParseError{MessageError::not_json, {}};
  if (!root.is_object()) return ParseError{MessageError::not_object, {}};

  const auto v = root.find("v");
  if (v == root.end()) return ParseError{MessageError::missing_field, "v"};
  if (!v->is_number_integer()) return ParseError{MessageError::wrong_type, "v"};
  if (!v->is_number_unsigned() || v->get<std::uint64_t>() != kMessageVersion) {
    return ParseError{MessageError::unsupported_version, "v"};
  }
  const auto type_it = root.find("type");
  if (type_it == root.end()) return ParseError{MessageError::missing_field, "type"};
  if (!type_it->is_string()) return ParseError{MessageError::wrong_type, "type"};
  const auto& type = type_it->get_ref<const std::string&>();

  if (type == "register") return parse_as<RegisterRequest>(root, read_register);
  if (type == "endpoint_update") return parse_as<EndpointUpdate>(root, read_endpoint_update);
  if (type == "ping") return parse_as<Ping>(root, read_ping);
  if (type == "nat_report") return parse_as<NatReport>(root, read_nat_report);
  if (type == "register_response") {
    return parse_as<RegisterResponse>(root, read_register_response);
  }
  if (type == "relay_map") return parse_as<RelayMap>(root, read_relay_map);
  if (type == "dns_config") return parse_as<DnsConfig>(root, read_dns_config);
  if (type == "pong") return parse_as<Pong>(root, read_pong);
  if (type == "error") return parse_as<ErrorMessage>(root, read_error);
  if (type == "relay_register") return parse_as<RelayRegister>(root, read_relay_register);
  if (type == "relay_register_response") {
    return parse_as<RelayRegisterResponse>(root, read_relay_register_response);
  }
  if (type == "route_advertise") return parse_as<RouteAdvertise>(root, read_route_advertise);
  if (type == "logout") return Logout{};  // no fields; unknown ones are ignored
  if (type == "self_update") return parse_as<SelfUpdate>(root, read_self_update);
  return ParseError{MessageError::unknown_type, "type"};
}

std::optional<Message> to_message(ParseResult&& result) {
  return std::visit(
      [](auto&& value) -> std::optional<Message> {
        using T = std::decay_t<decltype(value)>;
        if constexpr (std::is_same_v<T, ParseError>) {
          return std::nullopt;
        } else {
          return Message(std::move(value));
        }
      },
      std::move(result));
}

}  // namespace knit::control
