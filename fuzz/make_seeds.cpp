// Writes seed inputs for the fuzz targets from Knit's own encoders (and the captured STUN
// packets in tests/vectors): <corpus>/<target>/seed-<name>. Run it by hand when a wire format
// changes and commit what it writes (small files):
//
//   <build>/fuzz/make_seeds fuzz/corpus
//
// Record-driven targets (fuzz_util.hpp: op u8 | length u16 | bytes) get sequences that reach
// deep states: a TCP handshake through the NAT engine, a tracked IPv6 flow and its reply, a
// packet through an established WireGuard session.
#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <optional>
#include <string>

#include "base/bytes.hpp"
#include "base/random.hpp"
#include "control/messages.hpp"
#include "control/peer_codec.hpp"
#include "control/token.hpp"
#include "localapi/protocol.hpp"
#include "nat/packet_builder.hpp"
#include "net/socket_error.hpp"
#include "punch/path/disco.hpp"
#include "punch/portmap/natpmp.hpp"
#include "punch/portmap/pcp.hpp"
#include "punch/stun/message.hpp"
#include "relay/frame.hpp"
#include "wg/crypto.hpp"

using namespace knit;
namespace fs = std::filesystem;

namespace {

fs::path root;

void write(const std::string& target, const std::string& name, const Bytes& bytes) {
  const fs::path dir = root / target;
  fs::create_directories(dir);
  std::ofstream out(dir / ("seed-" + name), std::ios::binary);
  out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
}
void write(const std::string& target, const std::string& name, const std::string& text) {
  write(target, name, Bytes(text.begin(), text.end()));
}

Bytes cat(std::initializer_list<Bytes> parts) {
  Bytes out;
  for (const Bytes& p : parts) out.insert(out.end(), p.begin(), p.end());
  return out;
}
Bytes record(std::uint8_t op, const Bytes& bytes) {
  Bytes out{op, static_cast<std::uint8_t>(bytes.size() >> 8), static_cast<std::uint8_t>(bytes.size())};
  out.insert(out.end(), bytes.begin(), bytes.end());
  return out;
}
IpAddress ip(const char* text) { return *IpAddress::parse(text); }
Endpoint ep(const char* text, std::uint16_t port) { return Endpoint(ip(text), port); }

// An IPv6 TCP/UDP packet without extension headers (checksum left zero: the tracker ignores it).
Bytes ipv6(const char* src, const char* dst, std::uint8_t next, std::uint16_t sport,
           std::uint16_t dport, std::uint8_t tcp_flags = 0x02) {
  const std::size_t l4 = next == 6 ? 20 : 8;
  Bytes p(40 + l4, 0);
  p[0] = 0x60;
  store_be16(p.data() + 4, static_cast<std::uint16_t>(l4));
  p[6] = next;
  p[7] = 64;
  std::copy_n(ip(src).bytes(), 16, p.begin() + 8);
  std::copy_n(ip(dst).bytes(), 16, p.begin() + 24);
  store_be16(p.data() + 40, sport);
  store_be16(p.data() + 42, dport);
  if (next == 6) {
    p[52] = 0x50;
    p[53] = tcp_flags;
  } else {
    store_be16(p.data() + 44, static_cast<std::uint16_t>(l4));
  }
  return p;
}

void stun_seeds() {
  for (const auto& entry : fs::directory_iterator(KNIT_VECTORS_DIR "/stun")) {
    std::ifstream in(entry.path());
    std::string hex, line;
    while (std::getline(in, line)) {
      if (line.empty() || line[0] == '#') continue;
      for (char c : line)
        if (std::isxdigit(static_cast<unsigned char>(c))) hex += c;
    }
    if (auto bytes = from_hex(hex)) write("stun", entry.path().stem().string(), *bytes);
  }
  punch::StunTransactionId id{};
  id.fill(7);
  write("stun", "request", punch::build_binding_request(id));
  write("stun", "request_change", punch::build_binding_request(id, {.change_flags = punch::stun::kChangeIp}));
  punch::StunRawId raw{};
  raw.fill(9);
  write("stun", "classic", punch::build_classic_binding_request(raw, punch::stun::kChangePort));
}

void wg_seeds() {
  Bytes init(148, 0), response(92, 0), cookie(64, 0), data(48, 0);
  init[0] = 1;
  response[0] = 2;
  cookie[0] = 3;
  data[0] = 4;
  write("wg_messages", "initiation", init);
  write("wg_messages", "response", response);
  write("wg_messages", "cookie_reply", cookie);
  write("wg_messages", "data", data);
  const Bytes udp4 = nat::make_udp(ep("10.0.0.2", 4000), ep("10.0.0.1", 53), Bytes(16, 0x61));
  const Bytes tcp4 = nat::make_tcp(ep("10.0.0.2", 4001), ep("10.0.0.1", 22), 0x02);
  const Bytes v6 = ipv6("fd00::2", "fd00::1", 17, 4000, 53);
  Bytes tick{10};
  // B sends packets through the session; A sends one; time passes; a replay; a new handshake.
  write("wg_device", "session", cat({record(1, udp4), record(1, tcp4), record(1, v6), record(2, udp4)}));
  write("wg_device", "spoofed_source", record(1, nat::make_udp(ep("10.9.9.9", 1), ep("10.0.0.1", 2))));
  write("wg_device", "timers", cat({record(3, Bytes{200}), record(1, udp4), record(3, Bytes{250})}));
  write("wg_device", "replay", cat({record(1, udp4), record(4, Bytes{0}), record(4, Bytes{0, 16, 1})}));
  write("wg_device", "flipped", cat({record(9, Bytes(udp4)), record(1, tcp4)}));
  write("wg_device", "rehandshake", cat({record(5, {}), record(1, udp4)}));
  write("wg_device", "raw", cat({record(0, data), record(0, init), record(8, cookie)}));
}

void uapi_seeds() {
  const std::string key(64, 'a'), peer(64, 'b');
  write("wg_uapi", "get", std::string("\x00", 1) + "get=1\n\n");
  write("wg_uapi", "set", std::string("\x03\x05\x09\x20", 4) + "set=1\nprivate_key=" + key +
                              "\nlisten_port=51820\nfwmark=0\nreplace_peers=true\npublic_key=" + peer +
                              "\npreshared_key=" + std::string(64, '0') +
                              "\nendpoint=192.0.2.1:51820\npersistent_keepalive_interval=25\n"
                              "replace_allowed_ips=true\nallowed_ip=10.0.0.2/32\nallowed_ip=fd00::/64\n"
                              "protocol_version=1\n\nget=1\n\n");
  write("wg_uapi", "remove", std::string("\x00", 1) + "set=1\npublic_key=" + peer +
                                 "\nremove=true\n\npublic_key=" + key + "\nupdate_only=true\n"
                                 "endpoint=[2001:db8::1]:1\n\n");
  write("wg_uapi", "errors", std::string("\x01\x02", 2) + "set=1\nbogus\n\nset=1\nlisten_port=x\n\nfoo=1\n\n");
}

void control_seeds() {
  SeededRandom rng(1);
  const auto key = wg::crypto::public_key_of(wg::crypto::generate_private_key(rng));
  control::RegisterRequest reg;
  reg.token = "knit1-AAAA";
  reg.disco_key = key;
  reg.hostname = "host-1";
  reg.os = "linux";
  reg.endpoints = {ep("192.0.2.1", 41641), ep("2001:db8::1", 41641)};
  reg.version = "0.1.0";
  write("control_message", "register", control::encode(control::Message{reg}));
  control::PeerInfo peer;
  peer.name = "peer-1";
  peer.node_key = key;
  peer.disco_key = key;
  peer.ipv4 = ip("100.64.0.2");
  peer.ipv6 = ip("fd7a:115c:a1e0::2");
  peer.endpoints = {ep("198.51.100.1", 1234)};
  peer.home_relay = "r1";
  peer.online = true;
  peer.last_seen = 1700000000;
  peer.tags = {"tag:a"};
  peer.routes = {*IpPrefix::parse("192.168.1.0/24")};
  write("control_message", "peer_map", control::encode(control::Message{control::PeerMapPage{3, 0, 1, {peer}}}));
  control::PeerDelta delta;
  delta.version = 4;
  delta.changed = {peer};
  delta.removed = {key};
  write("control_message", "peer_delta", control::encode(control::Message{delta}));
  // The binary forms (control/peer_codec.hpp): a page of two peers (one with an IPv6 address
  // outside the mesh's base) and a delta with all three lists.
  control::PeerInfo other = peer;
  other.name = "peer-2";
  other.node_key = wg::crypto::public_key_of(wg::crypto::generate_private_key(rng));
  other.disco_key = wg::crypto::public_key_of(wg::crypto::generate_private_key(rng));
  other.ipv4 = ip("100.64.0.3");
  other.ipv6 = ip("2001:db8::3");
  other.online = false;
  other.tags = {};
  other.routes = {*IpPrefix::parse("10.0.0.0/8"), *IpPrefix::parse("2001:db8:1::/48")};
  control::PeerMap map;
  map.version = 5;
  map.peers = {peer, other};
  write("peer_codec", "page", control::encode_pages(map).front());
  const control::V6Base base = control::v6_base_of({peer, other});
  std::string binary_delta = control::delta_header(6, base);
  control::append_count(binary_delta, 1);
  control::append_peer(binary_delta, other, base);
  control::append_count(binary_delta, 1);
  control::append_peer(binary_delta, peer, base);
  control::append_count(binary_delta, 1);
  control::append_key(binary_delta, wg::crypto::public_key_of(wg::crypto::generate_private_key(rng)));
  write("peer_codec", "delta", binary_delta);
  control::RelayInfo relay{"r1", key, {*control::HostPort::parse("relay.example.net:443")}, 3478};
  write("control_message", "relay_map", control::encode(control::Message{control::RelayMap{{relay}}}));
  control::NatReport nat;
  nat.udp = true;
  nat.public_v4 = ep("203.0.113.1", 5000);
  nat.filtering = control::NatFiltering::apdf;
  nat.relay_latency_ms = {{"r1", 12}};
  write("control_message", "nat_report", control::encode(control::Message{nat}));
  control::RegisterResponse resp;
  resp.ok = true;
  resp.node = {"host-1", ip("100.64.0.1"), ip("fd7a:115c:a1e0::1"), key};
  resp.mesh = {*IpPrefix::parse("100.64.0.0/10"), *IpPrefix::parse("fd7a:115c:a1e0::/48")};
  resp.features = {"logout"};
  write("control_message", "register_response", control::encode(control::Message{resp}));
  write("control_message", "ping", control::encode(control::Message{control::Ping{7}}));
  write("control_message", "logout", control::encode(control::Message{control::Logout{}}));
  control::RouteAdvertise routes;
  routes.routes = {*IpPrefix::parse("10.1.0.0/24"), *IpPrefix::parse("fd00:1::/64")};
  routes.exit_node = true;
  write("control_message", "route_advertise", control::encode(control::Message{routes}));
  write("route_list", "list", "10.0.0.0/8, 192.168.1.0/24,exit");
  write("snat_state", "file",
        R"({"sysctls_before":{"net/ipv4/ip_local_reserved_ports":"","net/ipv4/conf/knit0/accept_local":"0",)"
        R"("net/ipv4/conf/knit0/rp_filter":"1"}})" "\n");

  control::JoinToken token;
  token.coordinator_key = key;
  token.id.fill(3);
  rng.fill(token.secret.span());
  token.addresses = {*control::HostPort::parse("192.0.2.1:7443"),
                     *control::HostPort::parse("[2001:db8::1]:7443"),
                     *control::HostPort::parse("coord.example.net:443")};
  write("token", "three_addresses", control::encode_token(token));
  token.addresses.resize(1);
  write("token", "one_address", control::encode_token(token) + "\n");

  // frame reader: limit (u16) | chunking seed | stream of length-prefixed frames
  Bytes stream{0x04, 0x00, 0x05};
  for (std::uint32_t len : {0u, 5u, 300u}) {
    Bytes h(4);
    store_be32(h.data(), len);
    stream.insert(stream.end(), h.begin(), h.end());
    stream.insert(stream.end(), len, 0x42);
  }
  write("frame_reader", "frames", stream);
  write("frame_reader", "too_large", Bytes{0x00, 0x10, 0x01, 0x00, 0x00, 0x10, 0x00, 1, 2, 3});
  // split frames allowed (the chunking seed's top bit): a flagged frame, then a plain one
  write("frame_reader", "split", Bytes{0x04, 0x00, 0x85, 0x80, 0x00, 0x00, 0x03, 7, 8, 9,
                                       0x00, 0x00, 0x00, 0x01, 4});
}

void relay_seeds() {
  SeededRandom rng(2);
  const auto key = wg::crypto::public_key_of(wg::crypto::generate_private_key(rng));
  const Bytes packet(40, 0x55);
  Bytes f;
  relay::encode_send(key, packet, f);
  write("relay_frame", "send", f);
  relay::encode_recv(key, packet, f);
  write("relay_frame", "recv", f);
  relay::encode_forward(key, key, packet, f);
  write("relay_frame", "forward", f);
  relay::encode_ping(42, f);
  write("relay_frame", "ping", f);
  relay::encode_peer_gone(key, relay::GoneReason::not_connected, f);
  write("relay_frame", "peer_gone", f);
  relay::encode_closing(relay::CloseReason::idle, f);
  write("relay_frame", "closing", f);
  relay::encode_keys(relay::FrameType::present, {key, key}, f);
  write("relay_frame", "present", f);
  write("relay_frame", "hello", relay::encode(relay::Hello{}));
  relay::Hello offer;
  offer.features = relay::kFeatureSplitData;
  write("relay_frame", "hello_features", relay::encode(offer));
  relay::Result grant;
  grant.keepalive_s = 20;
  grant.features = relay::kFeatureSplitData;
  write("relay_frame", "result_features", relay::encode(grant));
  // parse_split_frame reads byte 0 as the sealed head's size, the rest as the message
  relay::encode_send(key, packet, f);
  write("relay_frame", "split_send", cat({Bytes{relay::kDataHeadSize}, f}));
  relay::encode_forward(key, key, packet, f);
  write("relay_frame", "split_forward", cat({Bytes{relay::kForwardHeadSize}, f}));
  // parse_run reads byte 0 as the packet count: a send head, packets of 3 and 2 bytes, trailer
  relay::encode_send(key, Bytes{1, 2, 3, 4, 5}, f);
  write("relay_frame", "run_send", cat({Bytes{2}, f, Bytes{0, 3, 0, 2, 2}}));
  offer.features = relay::kKnownFeatures;
  write("relay_frame", "hello_runs", relay::encode(offer));
  // relay server: frames from A, a send to B, an unauthenticated connection, time
  Bytes ping;
  relay::encode_ping(5, ping);
  Bytes keepalive;
  relay::encode_keepalive(keepalive);
  Bytes present;
  relay::encode_keys(relay::FrameType::present, {key}, present);
  write("relay_server", "frames", cat({record(0, ping), record(0, keepalive), record(0, present),
                                       record(1, packet), record(4, Bytes{21}), record(0, ping)}));
  write("relay_server", "stranger", cat({record(2, Bytes{0, 0, 0, 4, 1, 2, 3, 4}), record(2, Bytes{0x16, 3, 1})}));
  write("relay_server", "raw", cat({record(1, packet), record(3, Bytes{0, 0, 0, 20})}));
  // a batch of packets sealed back to back, fed in two reads (op 6)
  Bytes batch{37};
  for (int i = 0; i < 600; ++i) batch.push_back(static_cast<std::uint8_t>(i * 7));
  write("relay_server", "batch", cat({record(6, batch), record(1, packet), record(6, Bytes{0, 1, 2, 3})}));
  // op 11: split messages from A: a send's head (to a key not connected: peer_gone), a ping
  // split after its type, a send with part of its packet sealed
  Bytes send;
  relay::encode_send(key, packet, send);
  write("relay_server", "split", cat({record(11, cat({Bytes{relay::kDataHeadSize - 1}, send})),
                                      record(11, cat({Bytes{0}, ping})),
                                      record(11, cat({Bytes{relay::kDataHeadSize + 4}, send})),
                                      record(6, batch)}));
}

void disco_seeds() {
  SeededRandom rng(3);
  punch::DiscoMessage ping;
  ping.type = punch::DiscoType::ping;
  ping.ping.tx_id.fill(1);
  punch::DiscoMessage pong;
  pong.type = punch::DiscoType::pong;
  pong.pong.observed = ep("203.0.113.5", 41641);
  punch::DiscoMessage cmm;
  cmm.type = punch::DiscoType::call_me_maybe;
  cmm.call_me_maybe.epoch = 9;
  cmm.call_me_maybe.mapping_varies = true;
  cmm.call_me_maybe.endpoints = {{punch::CandidateKind::reflexive, ep("203.0.113.5", 41641)},
                                 {punch::CandidateKind::local, ep("2001:db8::5", 41641)}};
  int i = 0;
  for (const auto* m : {&ping, &pong, &cmm}) {
    const Bytes plain = punch::encode_plaintext(*m);
    write("disco", "sealed" + std::to_string(i), cat({Bytes{1}, plain}));
    write("disco", "plain" + std::to_string(i), cat({Bytes{2}, plain}));
    ++i;
  }
  wg::PrivateKey k;
  punch::DiscoKey pub;
  punch::generate_disco_key(k, pub, rng);
  punch::DiscoSession s;
  (void)s.init(k, pub, pub);
  write("disco", "packet", cat({Bytes{0}, s.seal(ping, 1, rng)}));
}

void nat_seeds() {
  const Endpoint in1 = ep("10.0.0.2", 40000), out1 = ep("192.0.2.7", 80), pub = ep("203.0.113.1", 40000);
  const Bytes syn = nat::make_tcp(in1, out1, 0x02);
  const Bytes synack = nat::make_tcp(out1, pub, 0x12);
  const Bytes ack = nat::make_tcp(in1, out1, 0x10, Bytes(20, 1));
  const Bytes fin = nat::make_tcp(in1, out1, 0x11);
  const Bytes udp_out = nat::make_udp(ep("10.0.0.2", 5353), ep("192.0.2.8", 53), Bytes(12, 2));
  const Bytes udp_in = nat::make_udp(ep("192.0.2.8", 53), ep("203.0.113.1", 5353), Bytes(12, 3));
  const Bytes echo = nat::make_icmp_query(ip("10.0.0.2"), ip("192.0.2.9"), 8, 77, 1);
  const Bytes echo_reply = nat::make_icmp_query(ip("192.0.2.9"), ip("203.0.113.1"), 0, 77, 1);
  const Bytes unreachable = nat::make_icmp_error(ip("192.0.2.8"), ip("203.0.113.1"), 3, 3,
                                                 nat::make_udp(ep("203.0.113.1", 5353), ep("192.0.2.8", 53)));
  const Bytes hairpin = nat::make_udp(ep("10.0.0.3", 6000), ep("203.0.113.1", 5353));
  const Bytes forward_in = nat::make_udp(ep("192.0.2.8", 999), ep("203.0.113.1", 5000));
  const auto frags = nat::fragment_packet(nat::make_udp(in1, out1, Bytes(64, 4)), 24);
  write("nat_engine", "tcp", cat({Bytes{0x00}, record(0, syn), record(1, synack), record(0, ack),
                                  record(2, fin), record(0x0e, {})}));
  write("nat_engine", "udp_icmp", cat({Bytes{0x15}, record(0, udp_out), record(1, udp_in), record(0, echo),
                                       record(1, echo_reply), record(1, unreachable), record(0, hairpin),
                                       record(1, forward_in)}));
  Bytes frag_seq{0x08};
  for (const Bytes& f : frags) frag_seq = cat({frag_seq, record(0, f)});
  write("nat_engine", "fragments", frag_seq);
  write("nat_engine", "unsolicited", cat({Bytes{0x02}, record(1, nat::make_tcp(out1, pub, 0x02)),
                                          record(0x0f, {}), record(0, syn)}));

  // packet filter: mesh 100.64.0.1, forward tcp 8080 -> 100.64.0.1:80
  const Endpoint me = ep("100.64.0.1", 50000), peer = ep("100.64.0.2", 443);
  write("packet_filter", "v4", cat({record(0, nat::make_tcp(me, peer, 0x02)),
                                    record(1, nat::make_tcp(peer, me, 0x12)),
                                    record(3, nat::make_tcp(ep("100.64.0.3", 1), ep("100.64.0.1", 8080), 0x02)),
                                    record(1, nat::make_udp(peer, me)), record(0x1c, {}),
                                    record(0x20, nat::make_icmp_query(ip("100.64.0.1"), ip("100.64.0.2"), 8, 1, 1))}));
  write("packet_filter", "v6", cat({record(0, ipv6("fd00::1", "fd00::2", 6, 5000, 443)),
                                    record(1, ipv6("fd00::2", "fd00::1", 6, 443, 5000, 0x12)),
                                    record(3, ipv6("fd00::3", "fd00::1", 17, 1, 2))}));
  write("ipv6_conntrack", "flows", cat({record(0, ipv6("fd00::1", "fd00::2", 6, 5000, 443)),
                                        record(1, ipv6("fd00::2", "fd00::1", 6, 443, 5000, 0x12)),
                                        record(0, ipv6("fd00::1", "fd00::2", 17, 53, 53)),
                                        record(0x0f, ipv6("fd00::2", "fd00::1", 17, 53, 53))}));
}

void portmap_seeds() {
  punch::PcpMapRequest req;
  req.nonce.fill(5);
  req.internal_port = 51820;
  req.lifetime_s = 7200;
  req.client = ip("192.168.1.2");
  // The request fields as the target reads them (portmap_fuzz.cpp), then an answer.
  Bytes head(req.nonce.begin(), req.nonce.end());
  head.push_back(0);  // udp
  head.push_back(0xca);
  head.push_back(0x6c);  // 51820
  for (std::uint8_t b : {0, 0, 0x1c, 0x20, 192, 168, 1, 2}) head.push_back(b);
  // A MAP answer: our request with the R bit, result 0 and an external address.
  Bytes answer = punch::build_pcp_map_request(req);
  answer[1] |= 0x80;
  write("portmap", "pcp_map", cat({head, Bytes{1}, answer}));
  Bytes announce = punch::build_pcp_announce_request({req.client});
  announce[1] |= 0x80;
  write("portmap", "pcp_announce", cat({head, Bytes{0}, announce}));
  write("portmap", "natpmp_address",
        cat({head, Bytes{0}, punch::build_natpmp_address_answer(punch::NatPmpResult::success, 5, ip("203.0.113.1"))}));
  write("portmap", "natpmp_map",
        cat({head, Bytes{1}, punch::build_natpmp_map_answer(1, punch::NatPmpResult::success, 5, 51820, 40000, 3600)}));
}

void localapi_seeds() {
  using namespace localapi;
  write("localapi", "up", std::string(1, '\0') + encode_request(ControlRequest{UpRequest{"knit1-AAAA", "host"}}));
  write("localapi", "status", std::string(1, '\0') + encode_request(ControlRequest{StatusRequest{}}));
  SetRequest shields_up;
  shields_up.shields_up = true;
  write("localapi", "set", std::string(1, '\0') + encode_request(ControlRequest{shields_up}));
  SetRequest set_operator;
  set_operator.operator_user = "alice";
  write("localapi", "set_operator", std::string(1, '\0') + encode_request(ControlRequest{set_operator}));
  write("localapi", "logout", std::string(1, '\0') + encode_request(ControlRequest{LogoutRequest{}}));
  RoutesRequest routes;
  routes.advertise_routes = std::vector<IpPrefix>{*IpPrefix::parse("192.168.1.0/24")};
  routes.advertise_exit_node = false;
  routes.accept_routes = true;
  write("localapi", "routes", std::string(1, '\0') + encode_request(ControlRequest{routes}));
  RoutesRequest exit_node;
  exit_node.exit_node = "gw";
  exit_node.exit_node_allow_lan = true;
  write("localapi", "routes_exit_node", std::string(1, '\0') + encode_request(ControlRequest{exit_node}));
  RoutesReply routes_reply;
  routes_reply.routes.advertised = {*IpPrefix::parse("192.168.1.0/24")};
  routes_reply.routes.accept = true;
  routes_reply.routes.dropped_source = 3;
  write("localapi", "routes_reply", "\x01" + encode_response(ControlResponse{routes_reply}));
  RoutesRequest snat_off;
  snat_off.snat_routes = false;
  write("localapi", "routes_snat", std::string(1, '\0') + encode_request(ControlRequest{snat_off}));
  write("localapi", "nat", std::string(1, '\0') + encode_request(ControlRequest{NatRequest{}}));
  NatReply nat_reply;
  nat_reply.nat.active = true;
  nat_reply.nat.ports = "61000-61999";
  nat_reply.nat.egress["10.77.0.0/24"] = "10.77.0.1";
  nat_reply.nat.counters["sessions"] = 1;
  nat_reply.nat.entries.push_back({"tcp", "100.64.0.2:40000", "10.77.0.1:61000", "10.77.0.2:5001", "established", 7440, 3});
  write("localapi", "nat_reply", "\x01" + encode_response(ControlResponse{nat_reply}));
  write("localapi", "forward", std::string(1, '\0') + encode_request(ControlRequest{ForwardAddRequest{
                                            {ForwardProtocol::udp, 53, ep("100.64.0.1", 5353)}}}));
  StatusReply status;
  status.status.self.name = "a";
  status.status.self.ipv4 = ip("100.64.0.1");
  status.status.self.ipv6 = ip("fd00::1");
  status.status.self.endpoints = {ep("192.0.2.1", 41641)};
  status.status.self.relay = "r1";
  PeerStatus p;
  p.name = "b";
  p.ipv4 = ip("100.64.0.2");
  p.ipv6 = ip("fd00::2");
  p.online = true;
  p.path = PathKind::direct;
  p.endpoint = ep("192.0.2.2", 41641);
  p.rtt_ms = 1.25;
  p.last_handshake = 1700000000;
  p.rx_bytes = 10;
  status.status.peers = {p};
  status.coordinator = {"connected", "192.0.2.9:7443", ""};
  write("localapi", "status_reply", "\x01" + encode_response(ControlResponse{status}));
  status.status.self.exit_node = ExitNodeStatus{"gw", ip("100.64.0.2"), true, false, "active"};
  write("localapi", "status_reply_exit_node", "\x01" + encode_response(ControlResponse{status}));
  RouteSettingsStatus route_settings;
  route_settings.accept = true;
  route_settings.carriers = {RouteCarrierStatus{*IpPrefix::parse("10.77.0.0/24"), "r2",
                                        {RouteCarrierCandidate{"r1", wg::PublicKey{}, "down", "no answer for 4.2 s", 4200},
                                         RouteCarrierCandidate{"r2", wg::PublicKey{}, "active", "", 120}}}};
  status.status.self.routes = route_settings;
  write("localapi", "status_reply_route_carriers", "\x01" + encode_response(ControlResponse{status}));
  write("localapi", "error_reply", "\x01" + encode_response(ControlResponse{ErrorReply{"no"}}));
  write("localapi", "logout_reply", "\x01" + encode_response(ControlResponse{LogoutReply{true, false, "host", "unreachable"}}));
  write("localapi", "ping_reply", "\x01" + encode_response(ControlResponse{PingInfoReply{p}}));
}

// net/socket_error: name length u8 | name | control (socket_error_fuzz.cpp).
void socket_error_seeds() {
  auto seed = [](const std::string& name, const Endpoint& to, bool dual_stack, bool v6_level,
                 std::uint32_t error, std::uint8_t origin, std::uint8_t type, std::uint8_t code, std::uint32_t info,
                 std::optional<IpAddress> offender = std::nullopt) {
    const Bytes n = net::encode_socket_name(to, dual_stack);
    Bytes in{static_cast<std::uint8_t>(n.size())};
    in.insert(in.end(), n.begin(), n.end());
    const Bytes c = net::encode_socket_error(v6_level, error, origin, type, code, info, offender);
    in.insert(in.end(), c.begin(), c.end());
    write("socket_error", name, in);
  };
  const Endpoint v4 = *Endpoint::parse("203.0.113.14:41641");
  const Endpoint v6 = *Endpoint::parse("[2001:db8::2]:41641");
  seed("frag_needed_v4", v4, false, false, EMSGSIZE, 2, 3, 4, 1280);      // SO_EE_ORIGIN_ICMP
  seed("frag_needed_mapped", v4, true, true, EMSGSIZE, 2, 3, 4, 1400);
  seed("packet_too_big_v6", v6, true, true, EMSGSIZE, 3, 2, 0, 1280);     // SO_EE_ORIGIN_ICMP6
  seed("port_unreachable", v4, true, true, ECONNREFUSED, 2, 3, 3, 0);
  seed("time_exceeded_v6", v6, true, true, EHOSTUNREACH, 3, 3, 0, 0);
  // A carrier NAT's time exceeded about a TTL-limited opener: the hop that sent it.
  seed("time_exceeded_offender_v4", *Endpoint::parse("203.0.113.33:41641"), false, false, EHOSTUNREACH, 2, 11, 0, 0,
       *IpAddress::parse("100.64.5.1"));
  seed("local_emsgsize", v4, false, false, EMSGSIZE, 1, 0, 0, 1500);     // SO_EE_ORIGIN_LOCAL
  seed("frag_needed_no_mtu", v4, false, false, EMSGSIZE, 2, 3, 4, 0);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::cerr << "usage: make_seeds CORPUS_DIR   (fuzz/corpus)\n";
    return 2;
  }
  root = argv[1];
  stun_seeds();
  wg_seeds();
  uapi_seeds();
  control_seeds();
  relay_seeds();
  disco_seeds();
  nat_seeds();
  portmap_seeds();
  localapi_seeds();
  socket_error_seeds();
  std::cout << "seeds written under " << root << "\n";
  return 0;
}
