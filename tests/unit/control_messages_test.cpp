// Control messages: every message round-trips through its JSON (peer pages and deltas through
// their binary form: control_peer_codec_test.cpp has the rest of theirs), and hostile JSON
// (malformed, wrong types, missing fields, huge lists, bad keys and addresses, unknown types,
// other versions, deep nesting) is refused with a clean error naming the field.
#include <gtest/gtest.h>

#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "base/bytes.hpp"
#include "base/random.hpp"
#include "control/constants.hpp"
#include "control/messages.hpp"

namespace knit::control {
namespace {

using nlohmann::json;

wg::PublicKey key(std::uint8_t fill) {
  wg::PublicKey k{};
  k.fill(fill);
  return k;
}

Endpoint ep(const char* text) { return Endpoint::parse(text).value(); }
IpAddress ip(const char* text) { return IpAddress::parse(text).value(); }
IpPrefix prefix(const char* text) { return IpPrefix::parse(text).value(); }

PeerInfo sample_peer(std::uint8_t n) {
  PeerInfo peer;
  peer.name = "host-" + std::to_string(n);
  peer.node_key = key(n);
  peer.disco_key = key(static_cast<std::uint8_t>(n + 100));
  peer.ipv4 = IpAddress::v4(0x64400000u + n);
  peer.ipv6 = ip("fd7a:115c:a1e0::5");
  peer.endpoints = {ep("198.51.100.7:41641"), ep("[2001:db8::7]:41641")};
  peer.home_relay = "fra";
  peer.online = n % 2 == 0;
  peer.last_seen = 1700000000 + n;
  peer.tags = {"tag:server", "prod"};
  peer.routes = {prefix("10.1.0.0/16"), prefix("fd00:1::/64")};
  return peer;
}

std::vector<Message> samples() {
  RegisterRequest reg;
  reg.token = "knit1-AAAA";
  reg.disco_key = key(9);
  reg.hostname = "laptop.local";
  reg.os = "linux";
  reg.endpoints = {ep("192.168.1.20:41641")};
  reg.version = "0.1.0";

  RegisterRequest rejoin = reg;
  rejoin.token.reset();
  rejoin.endpoints.clear();

  NatReport nat;
  nat.udp = true;
  nat.public_v4 = ep("203.0.113.9:61000");
  nat.mapping_varies = true;
  nat.filtering = NatFiltering::apdf;
  nat.relay_latency_ms = {{"fra", 12}, {"nyc", 95}};

  RegisterResponse ok;
  ok.ok = true;
  ok.node = {"laptop", ip("100.64.0.7"), ip("fd7a:115c:a1e0::7"), key(3)};
  ok.mesh = {prefix("100.64.0.0/10"), prefix("fd7a:115c:a1e0::/48")};
  ok.features = {"logout"};

  RegisterResponse refused;
  refused.ok = false;
  refused.error_code = ErrorCode::token_expired;
  refused.error_message = "token 0123456789abcdef expired at 2024-01-01";

  RelayMap relays{{{"fra",
                    key(50),
                    {*HostPort::parse("relay.example:443"), *HostPort::parse("[2001:db8::50]:443")},
                    3478},
                   {"nyc", key(51), {*HostPort::parse("192.0.2.51:443")}, 0}}};

  RelayRegister relay_reg;
  relay_reg.token = "knit1-BBBB";
  relay_reg.name = "fra-1";
  relay_reg.addresses = {*HostPort::parse("relay.example:443"), *HostPort::parse("[2001:db8::9]:8443")};
  relay_reg.stun_port = 3478;
  relay_reg.version = "0.1.0";
  RelayRegister relay_rejoin = relay_reg;
  relay_rejoin.token.reset();
  relay_rejoin.stun_port = 0;
  RelayRegisterResponse relay_ok;
  relay_ok.ok = true;
  relay_ok.name = "fra-1";
  RelayRegisterResponse relay_refused;
  relay_refused.error_code = ErrorCode::key_in_use;
  relay_refused.error_message = "this key is a node's key, not a relay's";

  // Relay messages last: tests pick the others by index.
  return {reg,
          rejoin,
          EndpointUpdate{{ep("10.0.0.1:1"), ep("[fe80::1]:2")}},
          Ping{7},
          nat,
          NatReport{},
          ok,
          refused,
          relays,
          RelayMap{},
          Pong{~std::uint64_t{0}},
          ErrorMessage{ErrorCode::mesh_full, "no addresses left"},
          relay_reg,
          relay_rejoin,
          relay_ok,
          relay_refused,
          Logout{},
          SelfUpdate{{"desk", ip("100.64.0.7"), ip("fd7a:115c:a1e0::7"), key(3)}}};
}

// The binary ones (peer_codec.hpp).
std::vector<Message> binary_samples() {
  return {PeerMapPage{42, 0, 1, {sample_peer(1), sample_peer(2)}},
          PeerMapPage{0, 0, 1, {}},
          PeerMapPage{7, 2, 3, {sample_peer(4)}},
          PeerDelta{43, {sample_peer(3)}, {sample_peer(1)}, {key(2)}},
          PeerDelta{}};
}

ParseError error_of(std::string_view text) {
  ParseResult result = parse_message(text);
  if (auto* e = std::get_if<ParseError>(&result)) return *e;
  ADD_FAILURE() << "accepted: " << text;
  return {};
}

ParseError error_of_json(const json& j) { return error_of(j.dump()); }

TEST(ControlMessages, EveryMessageRoundTrips) {
  auto all = samples();
  for (Message& m : binary_samples()) all.push_back(std::move(m));
  for (const Message& message : all) {
    const std::string text = encode(message);
    ParseResult result = parse_message(text);
    ASSERT_FALSE(std::holds_alternative<ParseError>(result))
        << text << "\n"
        << std::get<ParseError>(result).describe();
    const auto back = to_message(std::move(result));
    ASSERT_TRUE(back);
    EXPECT_EQ(*back, message) << text;
    EXPECT_EQ(encode(*back), text);
  }
}

TEST(ControlMessages, WireShape) {
  const json j = json::parse(encode(Ping{5}));
  EXPECT_EQ(j, json::parse(R"({"v":1,"type":"ping","seq":5})"));
  EXPECT_TRUE(encode(Ping{5}).starts_with(R"({"v":1,"type":"ping")"));
  // Keys as `wg` shows them: standard base64 with padding.
  const json relays = json::parse(encode(std::get<RelayMap>(samples()[8])))["relays"][0];
  EXPECT_EQ(relays["node_key"], "MjIyMjIyMjIyMjIyMjIyMjIyMjIyMjIyMjIyMjIyMjI=");
  EXPECT_EQ(relays["addresses"][1], "[2001:db8::50]:443");
  // Peer pages and deltas are binary, told apart by their first byte.
  EXPECT_EQ(static_cast<std::uint8_t>(encode(binary_samples()[0])[0]), 0xB1);
}

TEST(ControlMessages, MalformedJson) {
  for (const char* text : {"", "{", "}", "{\"v\":1,", "nul", "{\"v\":1 \"type\":\"ping\"}",
                           "{'v':1}", "{\"v\":1,\"type\":\"ping\",\"seq\":5}garbage", "\xff\xfe",
                           "{\"v\":1,\"type\":\"ping\",\"seq\":05}"}) {
    EXPECT_EQ(error_of(text).kind, MessageError::not_json) << text;
  }
  // Invalid UTF-8 inside a string.
  EXPECT_EQ(
      error_of("{\"v\":1,\"type\":\"error\",\"code\":\"internal\",\"message\":\"\xc3\x28\"}").kind,
      MessageError::not_json);
  for (const char* text : {"[]", "1", "\"ping\"", "null", "true"}) {
    EXPECT_EQ(error_of(text).kind, MessageError::not_object) << text;
  }
}

TEST(ControlMessages, VersionIsCheckedFirst) {
  EXPECT_EQ(error_of(R"({"type":"ping","seq":1})"), (ParseError{MessageError::missing_field, "v"}));
  EXPECT_EQ(error_of(R"({"v":"1","type":"ping","seq":1})").kind, MessageError::wrong_type);
  EXPECT_EQ(error_of(R"({"v":1.0,"type":"ping","seq":1})").kind, MessageError::wrong_type);
  for (const char* v : {"0", "2", "-1", "18446744073709551615"}) {
    const std::string text = std::string(R"({"v":)") + v + R"(,"type":"brand_new","x":[]})";
    EXPECT_EQ(error_of(text).kind, MessageError::unsupported_version) << v;
  }
  EXPECT_EQ(error_of(R"({"v":1,"type":"teleport"})"),
            (ParseError{MessageError::unknown_type, "type"}));
  EXPECT_EQ(error_of(R"({"v":1,"type":7})").kind, MessageError::wrong_type);
  EXPECT_EQ(error_of(R"({"v":1})").kind, MessageError::missing_field);
}

TEST(ControlMessages, UnknownFieldsAreIgnored) {
  ParseResult result = parse_message(R"({"v":1,"type":"ping","seq":3,"future":{"x":[1,2]}})");
  ASSERT_TRUE(std::holds_alternative<Ping>(result));
  EXPECT_EQ(std::get<Ping>(result).seq, 3u);
}

// Values of every JSON type; a field is offered each one of another type than its own.
std::vector<json> other_types(const json& value) {
  std::vector<json> out;
  for (const json& candidate : {json(42), json(-1), json(1.5), json("text"), json::array(),
                                json::object(), json(true), json(nullptr)}) {
    if (candidate.type() != value.type() &&
        !(candidate.is_number() && value.is_number() &&
          candidate.is_number_integer() == value.is_number_integer() &&
          candidate.get<double>() >= 0)) {
      out.push_back(candidate);
    }
  }
  return out;
}

bool is_optional(const std::string& type, const std::string& field) {
  return ((type == "register" || type == "relay_register") && field == "token") ||
         (type == "relay_register_response" && field == "error_message") ||
         (type == "nat_report" && (field == "public_v4" || field == "public_v6")) ||
         (type == "register_response" && (field == "error_message" || field == "features"));
}

TEST(ControlMessages, EveryMissingFieldAndWrongTypeIsRefused) {
  int checked = 0;
  for (const Message& message : samples()) {
    const json original = json::parse(encode(message));
    const std::string type = original["type"];
    for (const auto& [field, value] : original.items()) {
      if (field == "v" || field == "type") continue;
      json missing = original;
      missing.erase(field);
      if (!is_optional(type, field)) {
        EXPECT_EQ(error_of_json(missing), (ParseError{MessageError::missing_field, field})) << type;
      }
      for (const json& wrong : other_types(value)) {
        if (wrong.is_null() && is_optional(type, field)) continue;
        json changed = original;
        changed[field] = wrong;
        const ParseError err = error_of_json(changed);
        EXPECT_EQ(err.field, field) << type << " " << wrong.dump();
        EXPECT_TRUE(err.kind == MessageError::wrong_type || err.kind == MessageError::bad_value)
            << type << "." << field << " = " << wrong.dump() << ": " << err.describe();
        ++checked;
      }
    }
  }
  EXPECT_GT(checked, 150);
}

TEST(ControlMessages, NestedObjectsAreChecked) {
  json ok = json::parse(encode(std::get<RegisterResponse>(samples()[6])));
  for (const char* part : {"node", "mesh"}) {
    for (const auto& [field, value] : ok[part].items()) {
      json missing = ok;
      missing[part].erase(field);
      EXPECT_EQ(error_of_json(missing),
                (ParseError{MessageError::missing_field, std::string(part) + "." + field}));
    }
    json wrong = ok;
    wrong[part] = "x";
    EXPECT_EQ(error_of_json(wrong), (ParseError{MessageError::wrong_type, part}));
  }
  json relay = json::parse(encode(std::get<RelayMap>(samples()[8])));
  relay["relays"][0].erase("stun_port");
  EXPECT_EQ(error_of_json(relay), (ParseError{MessageError::missing_field, "relays[0].stun_port"}));
}

json with(const Message& message, const std::function<void(json&)>& edit) {
  json j = json::parse(encode(message));
  edit(j);
  return j;
}

TEST(ControlMessages, BadKeys) {
  const RegisterRequest reg = std::get<RegisterRequest>(samples()[0]);
  const std::string good = json::parse(encode(reg))["disco_key"];
  for (const std::string& bad :
       {std::string(""), std::string("AAAA"), good.substr(0, 43), good + "=", std::string(44, '!'),
        std::string(1000, 'A'),
        std::string("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="),  // zero
        std::string("CQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQk="),  // ok
        std::string("CQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQl="),  // not canonical
        std::string("CQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJ")}) {
    json j = json::parse(encode(reg));
    j["disco_key"] = bad;
    ParseResult result = parse_message(j.dump());
    if (bad == good) {
      EXPECT_TRUE(std::holds_alternative<RegisterRequest>(result));
      continue;
    }
    ASSERT_TRUE(std::holds_alternative<ParseError>(result)) << bad;
    const ParseError err = std::get<ParseError>(result);
    EXPECT_EQ(err.field, "disco_key");
    EXPECT_TRUE(err.kind == MessageError::bad_value || err.kind == MessageError::too_long) << bad;
  }
  // In a list, the index is named.
  EXPECT_EQ(error_of_json(with(samples()[8], [](json& j) { j["relays"][1]["node_key"] = "AAAA"; })),
            (ParseError{MessageError::bad_value, "relays[1].node_key"}));
}

TEST(ControlMessages, AddressFamiliesAndShapes) {
  const auto samples_list = samples();
  const Message& ok = samples_list[6];
  const Message& nat = samples_list[4];
  struct Case {
    const Message* message;
    std::function<void(json&)> edit;
    std::string field;
  };
  const std::vector<Case> cases = {
      {&ok, [](json& j) { j["node"]["ipv4"] = "fd00::1"; }, "node.ipv4"},
      {&ok, [](json& j) { j["node"]["ipv6"] = "100.64.0.1"; }, "node.ipv6"},
      {&ok, [](json& j) { j["node"]["ipv4"] = "100.64.0"; }, "node.ipv4"},
      {&ok, [](json& j) { j["mesh"]["ipv4_prefix"] = "fd00::/48"; }, "mesh.ipv4_prefix"},
      {&ok, [](json& j) { j["mesh"]["ipv4_prefix"] = "100.64.0.1/10"; }, "mesh.ipv4_prefix"},
      {&ok, [](json& j) { j["mesh"]["ipv4_prefix"] = "100.64.0.0/33"; }, "mesh.ipv4_prefix"},
      {&ok, [](json& j) { j["mesh"]["ipv4_prefix"] = "100.64.0.0"; }, "mesh.ipv4_prefix"},
      {&ok, [](json& j) { j["mesh"]["ipv6_prefix"] = "100.64.0.0/10"; }, "mesh.ipv6_prefix"},
      {&ok, [](json& j) { j["node"]["name"] = "has space"; }, "node.name"},
      {&ok, [](json& j) { j["node"]["name"] = ""; }, "node.name"},
      {&nat, [](json& j) { j["public_v4"] = "[2001:db8::1]:5"; }, "public_v4"},
      {&nat, [](json& j) { j["public_v6"] = "192.0.2.1:5"; }, "public_v6"},
      {&nat, [](json& j) { j["filtering"] = "symmetric"; }, "filtering"},
      {&nat, [](json& j) { j["relay_latency_ms"]["bad name"] = 5; }, "relay_latency_ms.bad name"},
      {&nat, [](json& j) { j["relay_latency_ms"]["fra"] = 4294967296; }, "relay_latency_ms.fra"},
      {&nat, [](json& j) { j["relay_latency_ms"]["fra"] = -3; }, "relay_latency_ms.fra"},
  };
  for (const Case& c : cases) {
    const json j = with(*c.message, c.edit);
    const ParseError err = error_of_json(j);
    EXPECT_EQ(err.field, c.field) << j.dump();
    EXPECT_NE(err.kind, MessageError::not_json);
  }
  RelayMap relays{{{"fra", key(1), {*HostPort::parse("a.example:1")}, 0},
                   {"fra", key(2), {*HostPort::parse("b.example:1")}, 0}}};
  EXPECT_EQ(error_of(encode(relays)).kind, MessageError::duplicate);
  relays.relays.resize(1);
  relays.relays[0].addresses.clear();
  EXPECT_EQ(error_of(encode(relays)), (ParseError{MessageError::bad_value, "relays[0].addresses"}));
  EXPECT_EQ(error_of_json(with(RelayMap{},
                               [](json& j) {
                                 j["relays"] = json::array(
                                     {{{"name", "x"},
                                       {"node_key", "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE="},
                                       {"addresses", {"relay.example"}},
                                       {"stun_port", 3478}}});
                               })),
            (ParseError{MessageError::bad_value, "relays[0].addresses[0]"}));
  EXPECT_EQ(error_of_json(with(RelayMap{},
                               [](json& j) {
                                 j["relays"] = json::array(
                                     {{{"name", "x"},
                                       {"node_key", "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE="},
                                       {"addresses", {"relay.example:1"}},
                                       {"stun_port", 65536}}});
                               })),
            (ParseError{MessageError::bad_value, "relays[0].stun_port"}));
}

TEST(ControlMessages, SelfUpdateNeedsAWholeNode) {
  EXPECT_EQ(error_of(R"({"v":1,"type":"self_update"})").kind, MessageError::missing_field);
  json j = json::parse(encode(SelfUpdate{{"desk", ip("100.64.0.7"), ip("fd7a:115c:a1e0::7"), key(3)}}));
  j["node"]["ipv4"] = "fd7a:115c:a1e0::7";
  EXPECT_EQ(error_of_json(j).field, "node.ipv4");
  j = json::parse(encode(SelfUpdate{{"desk", ip("100.64.0.7"), ip("fd7a:115c:a1e0::7"), key(3)}}));
  j["node"]["name"] = "a b";
  EXPECT_EQ(error_of_json(j).field, "node.name");
}

TEST(ControlMessages, RegisterResponseShapes) {
  // ok=false needs a code; the message is optional.
  EXPECT_EQ(error_of(R"({"v":1,"type":"register_response","ok":false})"),
            (ParseError{MessageError::missing_field, "error_code"}));
  ParseResult result =
      parse_message(R"({"v":1,"type":"register_response","ok":false,"error_code":"token_used"})");
  ASSERT_TRUE(std::holds_alternative<RegisterResponse>(result));
  EXPECT_EQ(std::get<RegisterResponse>(result).error_code, ErrorCode::token_used);
  // A code from a newer coordinator still parses, as unknown.
  result = parse_message(
      R"({"v":1,"type":"register_response","ok":false,"error_code":"quota_exceeded","error_message":"x"})");
  ASSERT_TRUE(std::holds_alternative<RegisterResponse>(result));
  EXPECT_EQ(std::get<RegisterResponse>(result).error_code, ErrorCode::unknown);
  // ok=true needs node and mesh.
  EXPECT_EQ(error_of(R"({"v":1,"type":"register_response","ok":true})"),
            (ParseError{MessageError::missing_field, "node"}));
  // Token: optional, null allowed, no spaces or control characters, bounded.
  result = parse_message(with(samples()[0], [](json& j) { j["token"] = nullptr; }).dump());
  ASSERT_TRUE(std::holds_alternative<RegisterRequest>(result));
  EXPECT_FALSE(std::get<RegisterRequest>(result).token);
  EXPECT_EQ(error_of_json(with(samples()[0], [](json& j) { j["token"] = "knit1 AAA"; })).field,
            "token");
  EXPECT_EQ(error_of_json(with(samples()[0], [](json& j) { j["token"] = std::string(5000, 'A'); })),
            (ParseError{MessageError::too_long, "token"}));
  EXPECT_EQ(error_of_json(with(samples()[0], [](json& j) { j["hostname"] = "a\nb"; })).field,
            "hostname");
  EXPECT_EQ(error_of_json(with(samples()[0], [](json& j) { j["hostname"] = ""; })).field,
            "hostname");
  EXPECT_EQ(error_of_json(with(samples()[0], [](json& j) { j["os"] = std::string(65, 'x'); })),
            (ParseError{MessageError::too_long, "os"}));
}

// `logout` has no fields; the coordinator's features are optional (an older coordinator sends
// none, and an agent then never sends logout), unknown feature names are kept.
TEST(ControlMessages, LogoutAndCoordinatorFeatures) {
  EXPECT_EQ(json::parse(encode(Logout{})), json::parse(R"({"v":1,"type":"logout"})"));
  EXPECT_TRUE(std::holds_alternative<Logout>(parse_message(R"({"v":1,"type":"logout","why":"x"})")));
  EXPECT_EQ(error_of(R"({"v":2,"type":"logout"})").kind, MessageError::unsupported_version);
  json older = json::parse(encode(std::get<RegisterResponse>(samples()[6])));
  older.erase("features");
  ParseResult result = parse_message(older.dump());
  ASSERT_TRUE(std::holds_alternative<RegisterResponse>(result));
  EXPECT_TRUE(std::get<RegisterResponse>(result).features.empty());
  older["features"] = {"logout", "teleport"};
  result = parse_message(older.dump());
  ASSERT_TRUE(std::holds_alternative<RegisterResponse>(result));
  EXPECT_EQ(std::get<RegisterResponse>(result).features, (std::vector<std::string>{"logout", "teleport"}));
  older["features"] = json::array({1});
  EXPECT_EQ(error_of_json(older).field, "features[0]");
}

TEST(ControlMessages, HugeListsAreRefused) {
  EndpointUpdate update;
  update.endpoints.assign(kMaxEndpoints, ep("192.0.2.1:1"));
  EXPECT_TRUE(std::holds_alternative<EndpointUpdate>(parse_message(encode(update))));
  update.endpoints.push_back(ep("192.0.2.1:1"));
  EXPECT_EQ(error_of(encode(update)), (ParseError{MessageError::too_many, "endpoints"}));

  json relays = json::array();
  for (std::size_t i = 0; i <= kMaxRelays; ++i) relays.push_back(0);
  EXPECT_EQ(error_of_json(with(RelayMap{}, [&](json& j) { j["relays"] = relays; })),
            (ParseError{MessageError::too_many, "relays"}));
  json latencies = json::object();
  for (std::size_t i = 0; i <= kMaxRelays; ++i) latencies["r" + std::to_string(i)] = 1;
  EXPECT_EQ(error_of_json(with(samples()[4], [&](json& j) { j["relay_latency_ms"] = latencies; })),
            (ParseError{MessageError::too_many, "relay_latency_ms"}));
}

TEST(ControlMessages, DeepNestingAndSizeAreRefusedBeforeParsing) {
  std::string deep = R"({"v":1,"type":"ping","seq":1,"x":)";
  deep += std::string(100000, '[');
  EXPECT_EQ(error_of(deep).kind, MessageError::too_deep);
  // Brackets inside strings do not count.
  const std::string quoted =
      R"({"v":1,"type":"error","code":"internal","message":")" + std::string(500, '[') + "\"}";
  EXPECT_TRUE(std::holds_alternative<ErrorMessage>(parse_message(quoted)));
  const std::string quoted_ok =
      R"({"v":1,"type":"error","code":"internal","message":"[[[[[[[[[[[[[[[[[[[[\"]]"})";
  EXPECT_TRUE(std::holds_alternative<ErrorMessage>(parse_message(quoted_ok)));
  EXPECT_EQ(error_of(std::string(kMaxMessageSize + 1, ' ')).kind, MessageError::too_large);
}

TEST(ControlMessages, RandomMutationsNeverCrash) {
  SeededRandom rng(21);
  auto all = samples();
  for (Message& m : binary_samples()) all.push_back(std::move(m));
  int refused = 0;
  for (int round = 0; round < 20000; ++round) {
    std::string text = encode(all[rng.uniform(static_cast<std::uint32_t>(all.size()))]);
    const std::uint32_t edits = 1 + rng.uniform(4);
    for (std::uint32_t e = 0; e < edits && !text.empty(); ++e) {
      const std::size_t at = rng.uniform(static_cast<std::uint32_t>(text.size()));
      switch (rng.uniform(3)) {
        case 0:
          text[at] = static_cast<char>(rng.uniform(256));
          break;
        case 1:
          text.erase(at, 1 + rng.uniform(8));
          break;
        default:
          text.insert(at, 1, "{}[]\",:0-e\\"[rng.uniform(11)]);
          break;
      }
    }
    ParseResult result = parse_message(text);
    if (std::holds_alternative<ParseError>(result)) {
      ++refused;
      EXPECT_FALSE(std::get<ParseError>(result).describe().empty());
    } else {
      // Whatever was accepted encodes and parses back to itself.
      const auto message = to_message(std::move(result));
      ASSERT_TRUE(message);
      const auto again = to_message(parse_message(encode(*message)));
      ASSERT_TRUE(again) << text;
      EXPECT_EQ(*again, *message);
    }
  }
  EXPECT_GT(refused, 10000);
}

TEST(ControlMessages, NonUtf8StringsEncodeSafely) {
  ErrorMessage message{ErrorCode::internal, std::string("bad \xff byte")};
  const std::string text = encode(message);
  ParseResult result = parse_message(text);
  ASSERT_TRUE(std::holds_alternative<ErrorMessage>(result));
  EXPECT_EQ(std::get<ErrorMessage>(result).message, "bad \xef\xbf\xbd byte");
}

TEST(ControlMessages, RelayRegisterIsValidated) {
  const auto all = samples();
  const Message& reg = all[12];
  const Message& ok = all[14];
  ASSERT_TRUE(std::holds_alternative<RelayRegister>(reg));
  struct Case {
    const Message* message;
    std::function<void(json&)> edit;
    ParseError error;
  };
  const std::vector<Case> cases = {
      // The name is a lowercase DNS label, as the coordinator stores it.
      {&reg, [](json& j) { j["name"] = "Fra"; }, {MessageError::bad_value, "name"}},
      {&reg, [](json& j) { j["name"] = "fra_1"; }, {MessageError::bad_value, "name"}},
      {&reg, [](json& j) { j["name"] = "-fra"; }, {MessageError::bad_value, "name"}},
      {&reg, [](json& j) { j["name"] = "fra-"; }, {MessageError::bad_value, "name"}},
      {&reg, [](json& j) { j["name"] = "fr--a"; }, {MessageError::bad_value, "name"}},
      {&reg, [](json& j) { j["name"] = ""; }, {MessageError::bad_value, "name"}},
      {&reg, [](json& j) { j["name"] = std::string(64, 'a'); }, {MessageError::too_long, "name"}},
      {&reg, [](json& j) { j["addresses"] = json::array(); }, {MessageError::bad_value, "addresses"}},
      {&reg, [](json& j) { j["addresses"][1] = "no-port"; }, {MessageError::bad_value, "addresses[1]"}},
      {&reg, [](json& j) { j["addresses"][0] = "relay.example:0"; },
       {MessageError::bad_value, "addresses[0]"}},
      {&reg, [](json& j) { j["addresses"][0] = std::string(300, 'a') + ":1"; },
       {MessageError::too_long, "addresses[0]"}},
      {&reg, [](json& j) { j["addresses"] = json::array({"a:1", "a:2", "a:3", "a:4", "a:5", "a:6", "a:7", "a:8", "a:9"}); },
       {MessageError::too_many, "addresses"}},
      {&reg, [](json& j) { j["stun_port"] = 65536; }, {MessageError::bad_value, "stun_port"}},
      {&reg, [](json& j) { j["stun_port"] = -1; }, {MessageError::bad_value, "stun_port"}},
      {&reg, [](json& j) { j["token"] = "knit1 x"; }, {MessageError::bad_value, "token"}},
      {&reg, [](json& j) { j["token"] = std::string(5000, 'A'); }, {MessageError::too_long, "token"}},
      {&reg, [](json& j) { j["version"] = std::string(65, 'v'); }, {MessageError::too_long, "version"}},
      {&reg, [](json& j) { j["version"] = "a\x01"; }, {MessageError::bad_value, "version"}},
      // An ok answer names the relay; a refusal needs a code.
      {&ok, [](json& j) { j.erase("name"); }, {MessageError::missing_field, "name"}},
      {&ok, [](json& j) { j["name"] = "Bad Name"; }, {MessageError::bad_value, "name"}},
      {&ok, [](json& j) { j["ok"] = false; }, {MessageError::missing_field, "error_code"}},
  };
  for (std::size_t i = 0; i < cases.size(); ++i) {
    EXPECT_EQ(error_of_json(with(*cases[i].message, cases[i].edit)), cases[i].error) << "case " << i;
  }
  // A null token is a rejoin; an unknown error code from a newer coordinator reads as unknown.
  ParseResult result = parse_message(with(reg, [](json& j) { j["token"] = nullptr; }).dump());
  ASSERT_TRUE(std::holds_alternative<RelayRegister>(result));
  EXPECT_FALSE(std::get<RelayRegister>(result).token);
  result = parse_message(
      R"({"v":1,"type":"relay_register_response","ok":false,"error_code":"relay_quota"})");
  ASSERT_TRUE(std::holds_alternative<RelayRegisterResponse>(result));
  EXPECT_EQ(std::get<RelayRegisterResponse>(result).error_code, ErrorCode::unknown);
  // IPv6 hosts keep one spelling.
  result = parse_message(with(reg, [](json& j) { j["addresses"][1] = "[2001:DB8::0:9]:8443"; }).dump());
  ASSERT_TRUE(std::holds_alternative<RelayRegister>(result));
  EXPECT_EQ(std::get<RelayRegister>(result).addresses[1].to_string(), "[2001:db8::9]:8443");
}

TEST(ControlMessages, RelayNames) {
  for (const char* good : {"a", "fra", "fra-1", "0", "a-b-c", "x1y2"})
    EXPECT_TRUE(is_valid_relay_name(good)) << good;
  for (const char* bad : {"", "-", "a-", "-a", "a--b", "A", "a_b", "a.b", "a b"})
    EXPECT_FALSE(is_valid_relay_name(bad)) << bad;
  EXPECT_TRUE(is_valid_relay_name(std::string(63, 'a')));
  EXPECT_FALSE(is_valid_relay_name(std::string(64, 'a')));
}

TEST(ControlErrorCodes, NamesAndHumanMessages) {
  for (ErrorCode code : {ErrorCode::token_invalid, ErrorCode::token_expired,
                         ErrorCode::token_revoked, ErrorCode::token_used, ErrorCode::not_registered,
                         ErrorCode::mesh_full, ErrorCode::key_in_use, ErrorCode::internal,
                         ErrorCode::unknown}) {
    EXPECT_EQ(error_code_from_string(to_string(code)), code);
    EXPECT_GT(human_message(code).size(), 20u);
  }
  EXPECT_EQ(human_message(ErrorCode::token_expired),
            "the join token has expired: create a new one with `knit-coordinator token create`");
  EXPECT_EQ(error_code_from_string("nope"), ErrorCode::unknown);
}

}  // namespace
}  // namespace knit::control
