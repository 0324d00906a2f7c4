// The UAPI codec against bytes captured from stock `wg` (wireguard-tools 1.0.20210914) and
// answers captured from wireguard-go 0.0.20220316, plus a numbered table of malformed input.
#include <gtest/gtest.h>

#include <map>
#include <string>
#include <vector>

#include "wg/uapi.hpp"
#include "base/bytes.hpp"

namespace knit::wg {
namespace {

// Keys of the capture session.
constexpr const char* kPrivateHex = "d0bdcffddcec931c652860affb093ae5b78b87c201a8769a9a9b76935a00697d";
constexpr const char* kPeerHex = "627cd8317341a8ec2d2c0bdaac3d56a1e28b3b63c78adca8013ab3f302035811";
constexpr const char* kPskHex = "756c1ac7f45aa132168f8a117866120ead95838b51778d4fae825ab277c3fcda";
constexpr const char* kPeer2Hex = "cfda8e27a942a3433e976f0a0234cd9521bbe9374b99d052ff222d854212a676";
constexpr const char* kGonePeerHex =
    "b85996fecc9c7f1fc6d2572a76eda11d59bcd20be8e543b15ce4bd85a8e75a33";
constexpr const char* kZeroHex = "0000000000000000000000000000000000000000000000000000000000000000";

// `wg set IF listen-port 51820 private-key F fwmark 0x1234 peer P preshared-key F
//  endpoint 1.2.3.4:5678 persistent-keepalive 25 allowed-ips 10.0.0.0/24,fd00::/64`
constexpr std::string_view kWgSetFull =
    "set=1\nprivate_key=d0bdcffddcec931c652860affb093ae5b78b87c201a8769a9a9b76935a00697d\n"
    "listen_port=51820\nfwmark=4660\n"
    "public_key=627cd8317341a8ec2d2c0bdaac3d56a1e28b3b63c78adca8013ab3f302035811\n"
    "preshared_key=756c1ac7f45aa132168f8a117866120ead95838b51778d4fae825ab277c3fcda\n"
    "endpoint=1.2.3.4:5678\npersistent_keepalive_interval=25\nreplace_allowed_ips=true\n"
    "allowed_ip=10.0.0.0/24\nallowed_ip=fd00::/64\n\n";
// `wg set IF peer P remove`
constexpr std::string_view kWgSetRemove =
    "set=1\npublic_key=627cd8317341a8ec2d2c0bdaac3d56a1e28b3b63c78adca8013ab3f302035811\n"
    "remove=true\n\n";
// `wg set IF fwmark off`
constexpr std::string_view kWgSetFwmarkOff = "set=1\nfwmark=0\n\n";
// `wg set IF peer P endpoint [fd00::1]:51820 allowed-ips ""`
constexpr std::string_view kWgSetV6NoAllowedIps =
    "set=1\npublic_key=627cd8317341a8ec2d2c0bdaac3d56a1e28b3b63c78adca8013ab3f302035811\n"
    "endpoint=[fd00::1]:51820\nreplace_allowed_ips=true\n\n";
// `wg set IF peer P persistent-keepalive off preshared-key /dev/null`
constexpr std::string_view kWgSetClearPsk =
    "set=1\npublic_key=627cd8317341a8ec2d2c0bdaac3d56a1e28b3b63c78adca8013ab3f302035811\n"
    "preshared_key=0000000000000000000000000000000000000000000000000000000000000000\n"
    "persistent_keepalive_interval=0\n\n";
// `wg set IF private-key /dev/null`
constexpr std::string_view kWgSetNoPrivateKey =
    "set=1\nprivate_key=0000000000000000000000000000000000000000000000000000000000000000\n\n";
// `wg setconf IF conf` (two peers)
constexpr std::string_view kWgSetconf =
    "set=1\nprivate_key=d0bdcffddcec931c652860affb093ae5b78b87c201a8769a9a9b76935a00697d\n"
    "listen_port=1234\nfwmark=7\nreplace_peers=true\n"
    "public_key=627cd8317341a8ec2d2c0bdaac3d56a1e28b3b63c78adca8013ab3f302035811\n"
    "preshared_key=756c1ac7f45aa132168f8a117866120ead95838b51778d4fae825ab277c3fcda\n"
    "endpoint=5.6.7.8:9\npersistent_keepalive_interval=10\nreplace_allowed_ips=true\n"
    "allowed_ip=10.1.0.0/16\nallowed_ip=10.2.0.1/32\n"
    "public_key=cfda8e27a942a3433e976f0a0234cd9521bbe9374b99d052ff222d854212a676\n"
    "replace_allowed_ips=true\nallowed_ip=10.3.0.0/16\n\n";
// `wg syncconf IF conf` against a device that also had peer b859...
constexpr std::string_view kWgSyncconf =
    "set=1\nprivate_key=d0bdcffddcec931c652860affb093ae5b78b87c201a8769a9a9b76935a00697d\n"
    "listen_port=1234\nfwmark=7\n"
    "public_key=b85996fecc9c7f1fc6d2572a76eda11d59bcd20be8e543b15ce4bd85a8e75a33\nremove=true\n"
    "public_key=627cd8317341a8ec2d2c0bdaac3d56a1e28b3b63c78adca8013ab3f302035811\n"
    "preshared_key=756c1ac7f45aa132168f8a117866120ead95838b51778d4fae825ab277c3fcda\n"
    "endpoint=5.6.7.8:9\npersistent_keepalive_interval=10\nreplace_allowed_ips=true\n"
    "allowed_ip=10.1.0.0/16\nallowed_ip=10.2.0.1/32\n"
    "public_key=cfda8e27a942a3433e976f0a0234cd9521bbe9374b99d052ff222d854212a676\n"
    "replace_allowed_ips=true\nallowed_ip=10.3.0.0/16\n\n";
// `wg show IF` / `wg showconf IF`
constexpr std::string_view kWgGet = "get=1\n\n";

// wireguard-go's answer to get=1 after setconf of a device with one peer (v6 endpoint, PSK,
// keepalive, three allowed IPs, the first given as 10.3.0.5/16).
constexpr std::string_view kWireguardGoGet =
    "private_key=d0bdcffddcec931c652860affb093ae5b78b87c201a8769a9a9b76935a00697d\n"
    "listen_port=51999\n"
    "public_key=cfda8e27a942a3433e976f0a0234cd9521bbe9374b99d052ff222d854212a676\n"
    "preshared_key=756c1ac7f45aa132168f8a117866120ead95838b51778d4fae825ab277c3fcda\n"
    "protocol_version=1\nendpoint=[2001:db8::1]:51820\nlast_handshake_time_sec=0\n"
    "last_handshake_time_nsec=0\ntx_bytes=0\nrx_bytes=0\npersistent_keepalive_interval=25\n"
    "allowed_ip=10.3.0.0/16\nallowed_ip=fd00:1::/64\nallowed_ip=192.168.7.7/32\nerrno=0\n\n";
// wireguard-go with fwmark and a peer that has no endpoint and no PSK.
constexpr std::string_view kWireguardGoGetFwmark =
    "private_key=d0bdcffddcec931c652860affb093ae5b78b87c201a8769a9a9b76935a00697d\n"
    "listen_port=1234\nfwmark=7\n"
    "public_key=cfda8e27a942a3433e976f0a0234cd9521bbe9374b99d052ff222d854212a676\n"
    "preshared_key=0000000000000000000000000000000000000000000000000000000000000000\n"
    "protocol_version=1\nlast_handshake_time_sec=0\nlast_handshake_time_nsec=0\ntx_bytes=0\n"
    "rx_bytes=0\npersistent_keepalive_interval=0\nallowed_ip=10.3.0.0/16\nerrno=0\n\n";

wg::PublicKey public_key(const char* hex) {
  wg::PublicKey key{};
  EXPECT_TRUE(from_hex_into(hex, key));
  return key;
}

template <std::size_t N>
std::string hex_of(const Secret<N>& secret) {
  return to_hex(secret.span());
}

IpPrefix prefix(const char* text) {
  auto parsed = IpPrefix::parse(text);
  EXPECT_TRUE(parsed) << text;
  return parsed.value_or(IpPrefix{});
}

Endpoint endpoint(const char* text) {
  auto parsed = Endpoint::parse(text);
  EXPECT_TRUE(parsed) << text;
  return parsed.value_or(Endpoint{});
}

// A one-line description of an event, to compare event sequences.
std::string describe(const UapiParser::Event& event) {
  if (std::holds_alternative<UapiParser::NeedMore>(event)) return "need-more";
  if (std::holds_alternative<UapiParser::Get>(event)) return "get";
  if (auto* error = std::get_if<UapiParser::Error>(&event))
    return "error " + std::to_string(error->errno_value);
  const auto& set = std::get<UapiParser::Set>(event).request;
  std::string out = "set";
  if (set.private_key) out += " private_key=" + hex_of(*set.private_key);
  if (set.listen_port) out += " listen_port=" + std::to_string(*set.listen_port);
  if (set.fwmark) out += " fwmark=" + std::to_string(*set.fwmark);
  if (set.replace_peers) out += " replace_peers";
  for (const auto& peer : set.peers) {
    out += " [peer " + to_hex(peer.public_key);
    if (peer.remove) out += " remove";
    if (peer.update_only) out += " update_only";
    if (peer.preshared_key) out += " psk=" + hex_of(*peer.preshared_key);
    if (peer.endpoint) out += " endpoint=" + peer.endpoint->to_string();
    if (peer.persistent_keepalive_interval)
      out += " keepalive=" + std::to_string(*peer.persistent_keepalive_interval);
    if (peer.replace_allowed_ips) out += " replace_allowed_ips";
    for (const auto& ip : peer.allowed_ips) out += " " + ip.to_string();
    out += "]";
  }
  return out;
}

std::vector<std::string> events_of(UapiParser& parser) {
  std::vector<std::string> out;
  for (int guard = 0; guard < 1000; ++guard) {
    auto event = parser.next();
    if (std::holds_alternative<UapiParser::NeedMore>(event)) break;
    out.push_back(describe(event));
  }
  return out;
}

std::vector<std::string> parse_all(std::string_view input) {
  UapiParser parser;
  parser.feed(input);
  return events_of(parser);
}

UapiSet parse_set(std::string_view input) {
  UapiParser parser;
  parser.feed(input);
  auto event = parser.next();
  auto* set = std::get_if<UapiParser::Set>(&event);
  EXPECT_TRUE(set) << describe(event);
  EXPECT_TRUE(std::holds_alternative<UapiParser::NeedMore>(parser.next()));
  EXPECT_TRUE(parser.idle());
  return set ? set->request : UapiSet{};
}

// --- What stock wg sends -------------------------------------------------------------------

TEST(UapiCodec, WgSetWithEveryPeerOption) {
  UapiSet set = parse_set(kWgSetFull);
  ASSERT_TRUE(set.private_key);
  EXPECT_EQ(hex_of(*set.private_key), kPrivateHex);
  EXPECT_EQ(set.listen_port, 51820);
  EXPECT_EQ(set.fwmark, 0x1234u);
  EXPECT_FALSE(set.replace_peers);
  ASSERT_EQ(set.peers.size(), 1u);
  const auto& peer = set.peers[0];
  EXPECT_EQ(peer.public_key, public_key(kPeerHex));
  EXPECT_FALSE(peer.remove);
  EXPECT_FALSE(peer.update_only);
  ASSERT_TRUE(peer.preshared_key);
  EXPECT_EQ(hex_of(*peer.preshared_key), kPskHex);
  EXPECT_EQ(peer.endpoint, endpoint("1.2.3.4:5678"));
  EXPECT_EQ(peer.persistent_keepalive_interval, 25);
  EXPECT_TRUE(peer.replace_allowed_ips);
  EXPECT_EQ(peer.allowed_ips, (std::vector<IpPrefix>{prefix("10.0.0.0/24"), prefix("fd00::/64")}));
}

TEST(UapiCodec, WgSetRemovePeer) {
  UapiSet set = parse_set(kWgSetRemove);
  EXPECT_FALSE(set.private_key);
  EXPECT_FALSE(set.listen_port);
  ASSERT_EQ(set.peers.size(), 1u);
  EXPECT_EQ(set.peers[0].public_key, public_key(kPeerHex));
  EXPECT_TRUE(set.peers[0].remove);
  EXPECT_FALSE(set.peers[0].replace_allowed_ips);
}

TEST(UapiCodec, WgSetFwmarkOff) {
  UapiSet set = parse_set(kWgSetFwmarkOff);
  EXPECT_EQ(set.fwmark, 0u);
  EXPECT_TRUE(set.peers.empty());
}

TEST(UapiCodec, WgSetV6EndpointAndNoAllowedIps) {
  UapiSet set = parse_set(kWgSetV6NoAllowedIps);
  ASSERT_EQ(set.peers.size(), 1u);
  EXPECT_EQ(set.peers[0].endpoint, endpoint("[fd00::1]:51820"));
  EXPECT_TRUE(set.peers[0].replace_allowed_ips);
  EXPECT_TRUE(set.peers[0].allowed_ips.empty());
  EXPECT_FALSE(set.peers[0].preshared_key);
}

TEST(UapiCodec, WgSetClearsPresharedKeyAndKeepalive) {
  UapiSet set = parse_set(kWgSetClearPsk);
  ASSERT_EQ(set.peers.size(), 1u);
  ASSERT_TRUE(set.peers[0].preshared_key);
  EXPECT_TRUE(set.peers[0].preshared_key->is_zero());
  EXPECT_EQ(set.peers[0].persistent_keepalive_interval, 0);
}

TEST(UapiCodec, WgSetRemovesPrivateKey) {
  UapiSet set = parse_set(kWgSetNoPrivateKey);
  ASSERT_TRUE(set.private_key);
  EXPECT_TRUE(set.private_key->is_zero());
}

TEST(UapiCodec, WgSetconfReplacesPeers) {
  UapiSet set = parse_set(kWgSetconf);
  EXPECT_TRUE(set.replace_peers);
  EXPECT_EQ(set.listen_port, 1234);
  EXPECT_EQ(set.fwmark, 7u);
  ASSERT_EQ(set.peers.size(), 2u);
  EXPECT_EQ(set.peers[0].public_key, public_key(kPeerHex));
  EXPECT_EQ(set.peers[0].endpoint, endpoint("5.6.7.8:9"));
  EXPECT_EQ(set.peers[0].persistent_keepalive_interval, 10);
  EXPECT_EQ(set.peers[0].allowed_ips,
            (std::vector<IpPrefix>{prefix("10.1.0.0/16"), prefix("10.2.0.1/32")}));
  EXPECT_EQ(set.peers[1].public_key, public_key(kPeer2Hex));
  EXPECT_FALSE(set.peers[1].preshared_key);
  EXPECT_FALSE(set.peers[1].endpoint);
  EXPECT_FALSE(set.peers[1].persistent_keepalive_interval);
  EXPECT_TRUE(set.peers[1].replace_allowed_ips);
  EXPECT_EQ(set.peers[1].allowed_ips, std::vector<IpPrefix>{prefix("10.3.0.0/16")});
}

TEST(UapiCodec, WgSyncconfRemovesMissingPeers) {
  UapiSet set = parse_set(kWgSyncconf);
  EXPECT_FALSE(set.replace_peers);
  ASSERT_EQ(set.peers.size(), 3u);
  EXPECT_EQ(set.peers[0].public_key, public_key(kGonePeerHex));
  EXPECT_TRUE(set.peers[0].remove);
  EXPECT_FALSE(set.peers[1].remove);
  EXPECT_FALSE(set.peers[2].remove);
}

TEST(UapiCodec, WgGet) {
  EXPECT_EQ(parse_all(kWgGet), std::vector<std::string>{"get"});
}

// --- Set keys and flags --------------------------------------------------------------------

TEST(UapiCodec, UpdateOnlyAndProtocolVersion) {
  UapiSet set = parse_set(std::string("set=1\npublic_key=") + kPeerHex +
                          "\nupdate_only=true\nprotocol_version=1\nallowed_ip=10.0.0.1/32\n\n");
  ASSERT_EQ(set.peers.size(), 1u);
  EXPECT_TRUE(set.peers[0].update_only);
  EXPECT_FALSE(set.peers[0].replace_allowed_ips);
  EXPECT_EQ(set.peers[0].allowed_ips, std::vector<IpPrefix>{prefix("10.0.0.1/32")});
}

TEST(UapiCodec, ReplaceAllowedIpsDropsEarlierLinesOfTheSection) {
  UapiSet set = parse_set(std::string("set=1\npublic_key=") + kPeerHex +
                          "\nallowed_ip=10.0.0.1/32\nreplace_allowed_ips=true\n"
                          "allowed_ip=10.0.0.2/32\n\n");
  ASSERT_EQ(set.peers.size(), 1u);
  EXPECT_TRUE(set.peers[0].replace_allowed_ips);
  EXPECT_EQ(set.peers[0].allowed_ips, std::vector<IpPrefix>{prefix("10.0.0.2/32")});
}

TEST(UapiCodec, AllowedIpHostBitsAreMasked) {
  UapiSet set = parse_set(std::string("set=1\npublic_key=") + kPeerHex +
                          "\nallowed_ip=10.3.0.5/16\nallowed_ip=fd00:1::77/64\n"
                          "allowed_ip=10.1.2.255/23\nallowed_ip=1.2.3.4/0\n"
                          "allowed_ip=10.0.0.0/024\n\n");
  ASSERT_EQ(set.peers.size(), 1u);
  EXPECT_EQ(set.peers[0].allowed_ips,
            (std::vector<IpPrefix>{prefix("10.3.0.0/16"), prefix("fd00:1::/64"),
                                   prefix("10.1.2.0/23"), prefix("0.0.0.0/0"),
                                   prefix("10.0.0.0/24")}));
}

TEST(UapiCodec, LenientWhereWireguardGoIs) {
  // Uppercase hex, a zoned link-local endpoint (the zone is dropped, as wireguard-go's get
  // shows), a v4-mapped v6 endpoint, leading zeros in numbers.
  UapiSet set = parse_set(
      "set=1\nlisten_port=0051820\n"
      "public_key=CFDA8E27A942A3433E976F0A0234CD9521BBE9374B99D052FF222D854212A676\n"
      "endpoint=[fe80::1%eth0]:9\n"
      "public_key=cfda8e27a942a3433e976f0a0234cd9521bbe9374b99d052ff222d854212a676\n"
      "endpoint=[::ffff:1.2.3.4]:05\n\n");
  EXPECT_EQ(set.listen_port, 51820);
  ASSERT_EQ(set.peers.size(), 2u);
  EXPECT_EQ(set.peers[0].public_key, public_key(kPeer2Hex));
  EXPECT_EQ(set.peers[0].endpoint, endpoint("[fe80::1]:9"));
  EXPECT_EQ(set.peers[1].endpoint->to_string(), "[::ffff:1.2.3.4]:5");
}

TEST(UapiCodec, EmptySetAndLimitsOfNumbers) {
  EXPECT_EQ(parse_all("set=1\n\n"), std::vector<std::string>{"set"});
  UapiSet set = parse_set(std::string("set=1\nlisten_port=65535\nfwmark=4294967295\npublic_key=") +
                          kPeerHex + "\npersistent_keepalive_interval=65535\n\n");
  EXPECT_EQ(set.listen_port, 65535);
  EXPECT_EQ(set.fwmark, 4294967295u);
  EXPECT_EQ(set.peers[0].persistent_keepalive_interval, 65535);
}

// --- Malformed input: a numbered table -----------------------------------------------------

struct BadCase {
  int number;
  std::string input;  // one whole request
  int errno_value;
};

std::string with_peer(const std::string& lines) {
  return std::string("set=1\npublic_key=") + kPeerHex + "\n" + lines + "\n";
}

TEST(UapiCodec, MalformedRequestsAnswerErrnoAndTheConnectionContinues) {
  const std::string long_value(3000, '1');
  const std::vector<BadCase> cases = {
      {1, "set=1\nbogus=1\n\n", -22},                              // unknown device key
      {2, "set=1\nallowed_ip=1.2.3.4/32\n\n", -22},                // peer key before public_key
      {3, "set=1\nnoequals\n\n", -71},                             // no '=': EPROTO
      {4, std::string("set=1\nprivate_key=") + (kPrivateHex + 1) + "\n\n", -22},  // 63 digits
      {5, std::string("set=1\nprivate_key=") + kPrivateHex + "0\n\n", -22},       // 65 digits
      {6, "set=1\nprivate_key=" + std::string(63, '0') + "g\n\n", -22},          // not hex
      {7, "set=1\npublic_key=1234\n\n", -22},                      // short public key
      {8, "set=1\npublic_key=\n\n", -22},                          // empty public key
      {9, with_peer("preshared_key=abc\n"), -22},
      {10, with_peer("endpoint=1.2.3.4\n"), -22},                  // no port
      {11, with_peer("endpoint=fd00::1:51820\n"), -22},            // v6 without brackets
      {12, with_peer("endpoint=[1.2.3.4]:5\n"), -22},              // v4 in brackets
      {13, with_peer("endpoint=1.2.3.4:65536\n"), -22},
      {14, with_peer("endpoint=vpn.example.com:51820\n"), -22},    // names resolve client-side
      {15, with_peer("endpoint=\n"), -22},
      {16, with_peer("allowed_ip=10.0.0.1\n"), -22},               // no "/bits"
      {17, with_peer("allowed_ip=10.0.0.0/33\n"), -22},
      {18, with_peer("allowed_ip=fd00::/129\n"), -22},
      {19, with_peer("allowed_ip=10.0.0.0/\n"), -22},
      {20, with_peer("allowed_ip=bogus/8\n"), -22},
      {21, with_peer("allowed_ip=fe80::1%eth0/64\n"), -22},        // zones refused
      {22, with_peer("protocol_version=2\n"), -22},
      {23, with_peer("protocol_version=\n"), -22},
      {24, "set=1\nlisten_port=65536\n\n", -22},
      {25, "set=1\nlisten_port=-1\n\n", -22},
      {26, "set=1\nlisten_port=+1\n\n", -22},
      {27, "set=1\nlisten_port=\n\n", -22},
      {28, "set=1\nlisten_port=12 \n\n", -22},
      {29, "set=1\nfwmark=4294967296\n\n", -22},
      {30, "set=1\nfwmark=0x10\n\n", -22},                         // wg converts hex itself
      {31, with_peer("persistent_keepalive_interval=65536\n"), -22},
      {32, "set=1\nreplace_peers=false\n\n", -22},
      {33, with_peer("remove=1\n"), -22},
      {34, with_peer("update_only=yes\n"), -22},
      {35, with_peer("replace_allowed_ips=false\n"), -22},
      {36, with_peer("listen_port=1\n"), -22},                     // device key in a peer section
      {37, with_peer("public_key=1\n"), -22},
      {38, "set=1\nPrivate_Key=" + std::string(kPrivateHex) + "\n\n", -22},  // keys are lowercase
      {39, "set=1\n listen_port=1\n\n", -22},
      {40, "set=1\nlisten_port=1\r\n\n", -22},                     // no CRLF
      {41, "set=1\nlisten_port=" + long_value + "\n\n", -22},       // value too long
      {42, with_peer("endpoint=" + long_value + "\n"), -22},
      {43, "get=1\nX\n\n", -22},                                   // get must end at once
      {44, "get=1\nget=1\n\n", -22},
      {45, "hello\n\n", -22},                                      // unknown operation
      {46, "set=2\n\n", -22},
      {47, "get=1 \n\n", -22},
      {48, "\n", -22},                                             // a stray blank line
      {49, std::string("set=1\npublic_key=") + kPeerHex + "\nremove=true\nbogus\n\n", -71},
  };
  for (const auto& bad : cases) {
    SCOPED_TRACE("case " + std::to_string(bad.number));
    UapiParser parser;
    parser.feed(bad.input);
    parser.feed("get=1\n\n");
    EXPECT_EQ(events_of(parser),
              (std::vector<std::string>{"error " + std::to_string(bad.errno_value), "get"}));
    EXPECT_FALSE(parser.fatal());
    EXPECT_TRUE(parser.idle());
  }
}

TEST(UapiCodec, ErrorIsReportedAsSoonAsItIsSeen) {
  UapiParser parser;
  parser.feed("set=1\nbogus=1\nlisten_port=1\n");
  EXPECT_EQ(events_of(parser), std::vector<std::string>{"error -22"});
  EXPECT_FALSE(parser.idle());
  // The rest of the failed request is skipped up to its blank line.
  parser.feed("private_key=zz\n\nset=1\nlisten_port=2\n\n");
  EXPECT_EQ(events_of(parser), std::vector<std::string>{"set listen_port=2"});
}

// --- Framing, limits and splitting ---------------------------------------------------------

TEST(UapiCodec, MissingBlankLineNeedsMore) {
  UapiParser parser;
  parser.feed("set=1\nlisten_port=7\n");
  EXPECT_TRUE(std::holds_alternative<UapiParser::NeedMore>(parser.next()));
  EXPECT_FALSE(parser.idle());
  parser.feed("\n");
  EXPECT_EQ(events_of(parser), std::vector<std::string>{"set listen_port=7"});

  parser.feed("get=1\n");
  EXPECT_TRUE(std::holds_alternative<UapiParser::NeedMore>(parser.next()));
  parser.feed("\n");
  EXPECT_EQ(events_of(parser), std::vector<std::string>{"get"});
  EXPECT_TRUE(parser.idle());
}

TEST(UapiCodec, OversizedLineIsFatal) {
  UapiParser parser;
  parser.feed("set=1\nlisten_port=");
  parser.feed(std::string(kUapiMaxLineBytes, '1'));
  EXPECT_EQ(events_of(parser), std::vector<std::string>{"error -90"});
  EXPECT_TRUE(parser.fatal());
  parser.feed("\n\nget=1\n\n");
  EXPECT_TRUE(std::holds_alternative<UapiParser::NeedMore>(parser.next()));
}

TEST(UapiCodec, LineAtTheLimitIsNotFatal) {
  UapiParser parser;
  std::string line = "set=1\nlisten_port=";
  line += std::string(kUapiMaxLineBytes - (line.size() - 6), '1') + "\n\n";  // exactly 4096
  parser.feed(line);
  EXPECT_EQ(events_of(parser), std::vector<std::string>{"error -22"});
  EXPECT_FALSE(parser.fatal());
}

TEST(UapiCodec, OversizedLineWithItsNewlineIsFatalToo) {
  UapiParser parser;
  parser.feed("hello" + std::string(kUapiMaxLineBytes, 'x') + "\n\n");
  EXPECT_EQ(events_of(parser), std::vector<std::string>{"error -90"});
  EXPECT_TRUE(parser.fatal());
}

TEST(UapiCodec, OversizedRequestIsFatal) {
  UapiParser parser;
  // A failed request is skipped, but its size still counts.
  parser.feed("set=1\nbogus=1\n");
  const std::string line(4000, 'x');
  for (std::size_t sent = 0; sent <= kUapiMaxRequestBytes; sent += line.size() + 1)
    parser.feed(line + "\n");
  EXPECT_EQ(events_of(parser), (std::vector<std::string>{"error -22", "error -90"}));
  EXPECT_TRUE(parser.fatal());
}

TEST(UapiCodec, TooManyPeersIsAnError) {
  UapiParser parser;
  std::string request = "set=1\n";
  request.reserve((kUapiMaxPeers + 2) * 80);
  for (std::size_t i = 0; i <= kUapiMaxPeers; ++i)
    request += std::string("public_key=") + kPeerHex + "\n";
  request += "\nget=1\n\n";
  parser.feed(request);
  EXPECT_EQ(events_of(parser), (std::vector<std::string>{"error -90", "get"}));
  EXPECT_FALSE(parser.fatal());
}

TEST(UapiCodec, TooManyAllowedIpsIsAnError) {
  UapiParser parser;
  std::string request = std::string("set=1\npublic_key=") + kPeerHex + "\n";
  request.reserve((kUapiMaxAllowedIps + 2) * 16 + 100);
  for (std::size_t i = 0; i <= kUapiMaxAllowedIps; ++i) request += "allowed_ip=::/0\n";
  ASSERT_LT(request.size(), kUapiMaxRequestBytes);
  request += "\nget=1\n\n";
  parser.feed(request);
  EXPECT_EQ(events_of(parser), (std::vector<std::string>{"error -90", "get"}));
}

TEST(UapiCodec, ByteByByteGivesTheSameEvents) {
  std::string stream;
  for (auto part : {kWgSetFull, kWgGet, kWgSetRemove, kWgSetconf, kWgSyncconf,
                    kWgSetFwmarkOff, kWgSetV6NoAllowedIps, kWgSetClearPsk, kWgSetNoPrivateKey})
    stream += part;
  stream += "set=1\nbogus=1\nmore=2\n\nhello\n\n\nget=1\nX\n\nset=1\nnoequals\n\n";
  stream += with_peer("allowed_ip=10.0.0.1\n") + "get=1\n\n";

  auto whole = parse_all(stream);
  ASSERT_EQ(whole.size(), 16u);
  UapiParser parser;
  std::vector<std::string> split;
  for (char c : stream) {
    parser.feed(std::string_view(&c, 1));
    for (auto& event : events_of(parser)) split.push_back(event);
  }
  EXPECT_EQ(split, whole);
  EXPECT_TRUE(parser.idle());

  // And in uneven chunks.
  UapiParser chunked;
  std::vector<std::string> pieces;
  for (std::size_t at = 0, step = 1; at < stream.size(); at += step, step = step * 3 % 97 + 1) {
    chunked.feed(std::string_view(stream).substr(at, step));
    for (auto& event : events_of(chunked)) pieces.push_back(event);
  }
  EXPECT_EQ(pieces, whole);
}

TEST(UapiCodec, GetAndSetPipelinedOnOneConnection) {
  EXPECT_EQ(parse_all(std::string(kWgGet) + "set=1\nlisten_port=5\n\nget=1\n\n"),
            (std::vector<std::string>{"get", "set listen_port=5", "get"}));
}

// --- get answers ---------------------------------------------------------------------------

UapiDeviceState captured_device() {
  UapiDeviceState state;
  state.private_key.emplace();
  EXPECT_TRUE(from_hex_into(kPrivateHex, state.private_key->span()));
  state.listen_port = 51999;
  UapiPeerState peer;
  peer.public_key = public_key(kPeer2Hex);
  EXPECT_TRUE(from_hex_into(kPskHex, peer.preshared_key.span()));
  peer.endpoint = endpoint("[2001:db8::1]:51820");
  peer.persistent_keepalive_interval = 25;
  peer.allowed_ips = {prefix("10.3.0.0/16"), prefix("fd00:1::/64"), prefix("192.168.7.7/32")};
  state.peers.push_back(peer);
  return state;
}

TEST(UapiCodec, GetMatchesWireguardGoByteForByte) {
  EXPECT_EQ(format_get(captured_device()), kWireguardGoGet);

  UapiDeviceState state;
  state.private_key.emplace();
  ASSERT_TRUE(from_hex_into(kPrivateHex, state.private_key->span()));
  state.listen_port = 1234;
  state.fwmark = 7;
  UapiPeerState peer;
  peer.public_key = public_key(kPeer2Hex);
  peer.allowed_ips = {prefix("10.3.0.0/16")};
  state.peers.push_back(peer);
  EXPECT_EQ(format_get(state), kWireguardGoGetFwmark);
}

TEST(UapiCodec, GetOfAnEmptyDevice) {
  EXPECT_EQ(format_get(UapiDeviceState{}), "errno=0\n\n");
  UapiDeviceState zero_key;
  zero_key.private_key.emplace();  // all zero: no key
  EXPECT_EQ(format_get(zero_key), "errno=0\n\n");
}

TEST(UapiCodec, FormatErrno) {
  EXPECT_EQ(format_errno(0), "errno=0\n\n");
  EXPECT_EQ(format_errno(-22), "errno=-22\n\n");
}

// A tiny independent reader of get answers, written the way `wg` reads them.
struct ReadBack {
  std::map<std::string, std::string> device;
  std::vector<std::multimap<std::string, std::string>> peers;
  std::vector<std::vector<std::string>> peer_key_order;
  bool terminated = false;
};

ReadBack read_back(const std::string& text) {
  ReadBack out;
  std::size_t at = 0;
  while (at < text.size()) {
    auto end = text.find('\n', at);
    if (end == std::string::npos) break;
    std::string line = text.substr(at, end - at);
    at = end + 1;
    if (line.empty()) break;
    auto eq = line.find('=');
    std::string key = line.substr(0, eq), value = line.substr(eq + 1);
    if (key == "errno") {
      out.terminated = value == "0" && at == text.size() - 1 && text.back() == '\n';
      break;
    }
    if (key == "public_key") {
      out.peers.emplace_back();
      out.peer_key_order.emplace_back();
    }
    if (out.peers.empty()) {
      out.device[key] = value;
    } else {
      out.peers.back().emplace(key, value);
      out.peer_key_order.back().push_back(key);
    }
  }
  return out;
}

TEST(UapiCodec, GetRoundTripsThroughAnIndependentReader) {
  UapiDeviceState state = captured_device();
  state.fwmark = 0xfeedbeef;
  UapiPeerState second;
  second.public_key = public_key(kPeerHex);
  second.endpoint = endpoint("192.0.2.7:65535");
  second.last_handshake_sec = 1700000000;
  second.last_handshake_nsec = 999999999;
  second.rx_bytes = 18446744073709551615ull;
  second.tx_bytes = 12345;
  state.peers.push_back(second);
  UapiPeerState third;  // no endpoint, no allowed IPs
  third.public_key = public_key(kGonePeerHex);
  state.peers.push_back(third);

  ReadBack back = read_back(format_get(state));
  ASSERT_TRUE(back.terminated);
  EXPECT_EQ(back.device, (std::map<std::string, std::string>{{"private_key", kPrivateHex},
                                                             {"listen_port", "51999"},
                                                             {"fwmark", "4276993775"}}));
  ASSERT_EQ(back.peers.size(), 3u);
  auto value = [&](std::size_t peer, const char* key) {
    auto it = back.peers[peer].find(key);
    return it == back.peers[peer].end() ? std::string("<none>") : it->second;
  };
  EXPECT_EQ(value(0, "public_key"), kPeer2Hex);
  EXPECT_EQ(value(0, "preshared_key"), kPskHex);
  EXPECT_EQ(value(0, "endpoint"), "[2001:db8::1]:51820");
  EXPECT_EQ(back.peers[0].count("allowed_ip"), 3u);
  EXPECT_EQ(value(1, "public_key"), kPeerHex);
  EXPECT_EQ(value(1, "preshared_key"), kZeroHex);
  EXPECT_EQ(value(1, "endpoint"), "192.0.2.7:65535");
  EXPECT_EQ(value(1, "last_handshake_time_sec"), "1700000000");
  EXPECT_EQ(value(1, "last_handshake_time_nsec"), "999999999");
  EXPECT_EQ(value(1, "rx_bytes"), "18446744073709551615");
  EXPECT_EQ(value(1, "tx_bytes"), "12345");
  EXPECT_EQ(value(1, "protocol_version"), "1");
  EXPECT_EQ(back.peers[1].count("allowed_ip"), 0u);
  EXPECT_EQ(value(2, "endpoint"), "<none>");
  // wireguard-go's order of keys in a peer section.
  EXPECT_EQ(back.peer_key_order[1],
            (std::vector<std::string>{"public_key", "preshared_key", "protocol_version",
                                      "endpoint", "last_handshake_time_sec",
                                      "last_handshake_time_nsec", "tx_bytes", "rx_bytes",
                                      "persistent_keepalive_interval"}));

  // What get prints, set accepts: the answer's peer sections re-read as a set request.
  std::string as_set = "set=1\n";
  std::string answer = format_get(state);
  for (std::size_t at = 0; at < answer.size();) {
    auto end = answer.find('\n', at);
    std::string line = answer.substr(at, end - at);
    at = end + 1;
    if (line.rfind("errno", 0) == 0) break;
    for (const char* skip : {"last_handshake", "tx_bytes", "rx_bytes"})
      if (line.rfind(skip, 0) == 0) line.clear();
    if (!line.empty()) as_set += line + "\n";
  }
  UapiSet set = parse_set(as_set + "\n");
  ASSERT_EQ(set.peers.size(), 3u);
  EXPECT_EQ(set.fwmark, 0xfeedbeefu);
  EXPECT_EQ(set.peers[0].allowed_ips, state.peers[0].allowed_ips);
  EXPECT_EQ(set.peers[1].endpoint, state.peers[1].endpoint);
}

}  // namespace
}  // namespace knit::wg
