// The local control protocol (knit <-> knitd): every request and answer survives a round trip,
// malformed requests are refused with a reason, and `knit status --json` has exactly the
// docs/ARCHITECTURE.md contract's fields.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <set>

#include "localapi/protocol.hpp"

namespace knit::localapi {
namespace {

using nlohmann::json;

wg::PublicKey key(std::uint8_t fill) {
  wg::PublicKey k{};
  k.fill(fill);
  return k;
}

StatusReport sample_status() {
  StatusReport status;
  status.self.name = "host-a";
  status.self.ipv4 = IpAddress::parse("100.64.0.1").value();
  status.self.ipv6 = IpAddress::parse("fd7a:1:2::1").value();
  status.self.node_key = key(1);
  status.self.endpoints = {Endpoint::parse("192.0.2.1:41641").value(), Endpoint::parse("[2001:db8::1]:41641").value()};
  PeerStatus direct;
  direct.name = "host-b";
  direct.ipv4 = IpAddress::parse("100.64.0.2").value();
  direct.ipv6 = IpAddress::parse("fd7a:1:2::2").value();
  direct.node_key = key(2);
  direct.online = true;
  direct.path = PathKind::direct;
  direct.endpoint = Endpoint::parse("192.0.2.2:41641");
  direct.relay = "fra";
  direct.rtt_ms = 1.25;
  direct.last_handshake = 1700000000;
  direct.rx_bytes = 1234;
  direct.tx_bytes = 5678;
  PeerStatus none;
  none.name = "host-c";
  none.ipv4 = IpAddress::parse("100.64.0.3").value();
  none.ipv6 = IpAddress::parse("fd7a:1:2::3").value();
  none.node_key = key(3);
  status.peers = {direct, none};
  return status;
}

template <typename T>
T parsed_request(const std::string& line) {
  auto result = parse_request(line);
  EXPECT_TRUE(std::holds_alternative<ControlRequest>(result)) << line;
  if (!std::holds_alternative<ControlRequest>(result)) return T{};
  const auto& request = std::get<ControlRequest>(result);
  EXPECT_TRUE(std::holds_alternative<T>(request)) << line;
  return std::holds_alternative<T>(request) ? std::get<T>(request) : T{};
}

TEST(ControlProtocol, RequestsRoundTrip) {
  const std::vector<ControlRequest> requests = {
      UpRequest{"knit1-abc", "laptop"}, UpRequest{"knit1-abc", ""}, UpRequest{"", ""},
      DownRequest{}, StatusRequest{}, IpRequest{}, PingInfoRequest{"host-b"}, VersionRequest{},
      NetcheckRequest{}, LogoutRequest{},
      SetRequest{std::nullopt, std::nullopt, std::nullopt, "alice"},
      SetRequest{true, std::nullopt, std::nullopt, ""},
      SetRequest{std::nullopt, std::nullopt, std::nullopt, std::nullopt}};
  for (const auto& request : requests) {
    const std::string line = encode_request(request);
    EXPECT_EQ(line.find('\n'), std::string::npos);
    auto back = parse_request(line);
    ASSERT_TRUE(std::holds_alternative<ControlRequest>(back)) << line;
    EXPECT_EQ(std::get<ControlRequest>(back), request) << line;
  }
}

TEST(ControlProtocol, ResponsesRoundTrip) {
  const std::vector<ControlResponse> responses = {
      ErrorReply{"not joined: run `knit up --token ...`"},
      UpReply{"host-a", IpAddress::parse("100.64.0.1").value(), IpAddress::parse("fd7a::1").value(), false},
      UpReply{"host-a", IpAddress::parse("100.64.0.1").value(), IpAddress::parse("fd7a::1").value(), true},
      DownReply{true},
      DownReply{false},
      LogoutReply{true, true, "host-a", ""},
      LogoutReply{true, false, "host-a", "no answer from the coordinator within 15 s"},
      LogoutReply{false, false, "", ""},
      SetReply{true, std::nullopt, std::nullopt, std::string("alice")},
      SetReply{false, true, false, std::string("")},
      StatusReply{sample_status(), CoordinatorStatus{"connected", "192.0.2.9:443", ""}},
      StatusReply{sample_status(), CoordinatorStatus{"waiting", "", "cannot reach the coordinator"}},
      IpReply{IpAddress::parse("100.64.0.1").value(), IpAddress::parse("fd7a::1").value()},
      PingInfoReply{sample_status().peers[0]},
      PingInfoReply{sample_status().peers[1]},
      VersionReply{"0.1.0"},
      NetcheckReply{},
      [] {
        NetcheckReply r;
        r.nat.udp = true;
        r.nat.public_v4 = Endpoint::parse("203.0.113.7:41641");
        r.nat.mapping_varies = true;
        r.nat.filtering = "apdf";
        r.mapping = "APDM";
        r.nat.mapping = "APDM";  // one field on the wire
        r.nat.mapping_source = "stun";
        r.portmap = {"pcp", "upnp"};
        r.portmapped = Endpoint::parse("203.0.113.7:50000");
        r.relay_ms = {{"r1", 12}, {"r2", 40}};
        r.home_relay = "r1";
        return r;
      }()};
  for (const auto& response : responses) {
    const std::string line = encode_response(response);
    EXPECT_EQ(line.find('\n'), std::string::npos);
    auto back = parse_response(line);
    ASSERT_TRUE(std::holds_alternative<ControlResponse>(back)) << line;
    EXPECT_EQ(std::get<ControlResponse>(back), response) << line;
  }
}

TEST(ControlProtocol, StatusJsonIsTheContract) {
  const json doc = json::parse(encode_status(sample_status()));
  auto keys = [](const json& object) {
    std::set<std::string> out;
    for (const auto& item : object.items()) out.insert(item.key());
    return out;
  };
  EXPECT_EQ(keys(doc), (std::set<std::string>{"self", "peers"}));
  EXPECT_EQ(keys(doc["self"]),
            (std::set<std::string>{"name", "ipv4", "ipv6", "node_key", "endpoints", "nat", "relay"}));
  EXPECT_TRUE(doc["self"]["nat"].is_object());
  EXPECT_TRUE(doc["self"]["relay"].is_null());
  EXPECT_EQ(doc["self"]["node_key"], "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=");
  EXPECT_EQ(doc["self"]["endpoints"], json({"192.0.2.1:41641", "[2001:db8::1]:41641"}));
  ASSERT_EQ(doc["peers"].size(), 2u);
  for (const json& peer : doc["peers"]) {
    EXPECT_EQ(keys(peer), (std::set<std::string>{"name", "ipv4", "ipv6", "node_key", "online", "path", "endpoint",
                                                 "relay", "rtt_ms", "last_handshake", "rx_bytes", "tx_bytes"}));
  }
  const json& b = doc["peers"][0];
  EXPECT_EQ(b["path"], "direct");
  // knitd's additions, when it knows them: the tunnel MTU and each peer's path MTU.
  StatusReport with_mtu = sample_status();
  with_mtu.self.mtu = 1420;
  with_mtu.peers[0].path_mtu = 1216;
  const json more = json::parse(encode_status(with_mtu));
  EXPECT_EQ(more["self"]["mtu"], 1420);
  EXPECT_EQ(more["peers"][0]["path_mtu"], 1216);
  EXPECT_FALSE(more["peers"][1].contains("path_mtu"));
  StatusReply reply;
  reply.status = with_mtu;
  auto back = parse_response(encode_response(ControlResponse{reply}));
  ASSERT_TRUE(std::holds_alternative<ControlResponse>(back));
  EXPECT_EQ(std::get<StatusReply>(std::get<ControlResponse>(back)).status, with_mtu);
  EXPECT_EQ(b["endpoint"], "192.0.2.2:41641");
  EXPECT_EQ(b["relay"], "fra");
  EXPECT_EQ(b["rtt_ms"], 1.25);
  EXPECT_EQ(b["last_handshake"], 1700000000);
  EXPECT_EQ(b["rx_bytes"], 1234);
  EXPECT_EQ(b["online"], true);
  const json& c = doc["peers"][1];
  EXPECT_EQ(c["path"], "none");
  EXPECT_TRUE(c["endpoint"].is_null());
  EXPECT_TRUE(c["relay"].is_null());
  EXPECT_TRUE(c["rtt_ms"].is_null());
  EXPECT_TRUE(c["last_handshake"].is_null());
  EXPECT_EQ(c["online"], false);
  EXPECT_EQ(c["rx_bytes"], 0);
  // Pretty-printed, the same document.
  EXPECT_EQ(json::parse(encode_status(sample_status(), 2)), doc);
}

TEST(ControlProtocol, UpFieldsAreOptional) {
  auto up = parsed_request<UpRequest>(R"({"cmd":"up"})");
  EXPECT_TRUE(up.token.empty());
  EXPECT_TRUE(up.hostname.empty());
  up = parsed_request<UpRequest>(R"({"cmd":"up","token":null,"hostname":"h","extra":1})");
  EXPECT_EQ(up.hostname, "h");
}

TEST(ControlProtocol, MalformedRequestsAreRefusedWithAReason) {
  const std::vector<std::string> bad = {
      "",
      "not json",
      "[1,2,3]",
      "\"up\"",
      "{}",
      R"({"cmd": 5})",
      R"({"cmd": "launch"})",
      R"({"cmd": "up", "token": 7})",
      R"({"cmd": "up", "hostname": ["a"]})",
      R"({"cmd": "ping-info"})",
      R"({"cmd": "ping-info", "peer": ""})",
      R"({"cmd": "ping-info", "peer": 1})",
      R"({"cmd": "up", "token": ")" + std::string(kMaxTokenText + 1, 'a') + R"("})",
      std::string(kMaxRequestLine + 1, ' '),
      std::string(100, '[') + std::string(100, ']'),
      R"({"cmd":"status")",
  };
  for (const auto& line : bad) {
    auto result = parse_request(line);
    ASSERT_TRUE(std::holds_alternative<ProtocolError>(result)) << line.substr(0, 80);
    EXPECT_EQ(std::get<ProtocolError>(result).message.rfind("bad request: ", 0), 0u);
  }
  // Brackets inside strings do not count as nesting.
  auto fine = parse_request(R"({"cmd":"ping-info","peer":"[[[[[[[[[[[[[[[[[[[[[[[[["})");
  EXPECT_TRUE(std::holds_alternative<ControlRequest>(fine));
}

TEST(ControlProtocol, MalformedAnswersAreRefused) {
  const std::vector<std::string> bad = {
      "garbage",
      R"({"ok": "yes"})",
      R"({"ok": true})",
      R"({"ok": true, "cmd": "teleport"})",
      R"({"ok": true, "cmd": "ip", "ipv4": "300.1.1.1", "ipv6": "fd00::1"})",
      R"({"ok": true, "cmd": "version"})",
      R"({"ok": false})",
  };
  for (const auto& line : bad)
    EXPECT_TRUE(std::holds_alternative<ProtocolError>(parse_response(line))) << line;
  // A status whose peer lacks a contract field.
  json doc = json::parse(encode_response(StatusReply{sample_status(), {"connected", "", ""}}));
  doc["status"]["peers"][0].erase("rtt_ms");
  EXPECT_TRUE(std::holds_alternative<ProtocolError>(parse_response(doc.dump())));
  doc = json::parse(encode_response(StatusReply{sample_status(), {"connected", "", ""}}));
  doc["status"]["peers"][0]["path"] = "teleport";
  EXPECT_TRUE(std::holds_alternative<ProtocolError>(parse_response(doc.dump())));
  doc["status"]["peers"][0]["path"] = "relay";
  doc["status"]["peers"][0]["rx_bytes"] = -1;
  EXPECT_TRUE(std::holds_alternative<ProtocolError>(parse_response(doc.dump())));
}

}  // namespace
}  // namespace knit::localapi
