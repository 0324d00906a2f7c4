// peer_codec_bench: what a peer entry costs on the wire and in CPU, in the JSON the control
// protocol used up to schema v1 against the binary form (control/peer_codec.hpp), each with and
// without zlib compression. Not a test: it prints numbers, the ones README.md quotes.
//
//   peer_codec_bench [--peers N] [--rounds R]
//
// The JSON side is the v1 layout field for field ({"name", "node_key" (base64), "disco_key",
// "ipv4", "ipv6", "endpoints" ["ip:port"], "home_relay", "online", "last_seen", "tags",
// "routes"}), written with nlohmann::ordered_json as control::encode did and read back with the
// checks its parser made (keys decoded from base64, addresses and endpoints parsed). Peers look
// like a bench agent's: a name, two keys, the mesh's two addresses, a LAN and a public endpoint,
// a home relay.
#include <CLI/CLI.hpp>
#include <zlib.h>

#include <chrono>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "base/bytes.hpp"
#include "base/random.hpp"
#include "control/messages.hpp"
#include "control/peer_codec.hpp"

namespace {

using namespace knit;
using Clock = std::chrono::steady_clock;
using Json = nlohmann::ordered_json;

std::vector<control::PeerInfo> make_peers(std::size_t n) {
  SeededRandom rng(1);
  std::vector<control::PeerInfo> out;
  const std::uint8_t ula[6] = {0xfd, 0x12, 0x34, 0x56, 0x78, 0x9a};
  for (std::size_t i = 0; i < n; ++i) {
    control::PeerInfo p;
    p.name = "bench-" + std::to_string(i);
    rng.fill(p.node_key);
    rng.fill(p.disco_key);
    p.ipv4 = IpAddress::v4(0x64400002u + static_cast<std::uint32_t>(i));
    std::uint8_t v6[16] = {};
    std::copy(ula, ula + 6, v6);
    std::copy(p.ipv4.bytes(), p.ipv4.bytes() + 4, v6 + 12);
    p.ipv6 = IpAddress::v6(v6);
    p.endpoints = {*Endpoint::parse("10.0." + std::to_string(i / 250 % 250) + "." +
                                    std::to_string(i % 250 + 1) + ":41641"),
                   *Endpoint::parse("203.0.113." + std::to_string(i % 250 + 1) + ":" +
                                    std::to_string(20000 + i % 40000))};
    p.home_relay = "relay-1";
    p.online = true;
    p.last_seen = 1765000000 + static_cast<std::int64_t>(i);
    out.push_back(std::move(p));
  }
  return out;
}

// ---- the v1 JSON form ----

Json json_peer(const control::PeerInfo& p) {
  Json out = Json::object();
  out["name"] = p.name;
  out["node_key"] = to_base64(p.node_key);
  out["disco_key"] = to_base64(p.disco_key);
  out["ipv4"] = p.ipv4.to_string();
  out["ipv6"] = p.ipv6.to_string();
  Json endpoints = Json::array();
  for (const Endpoint& e : p.endpoints) endpoints.push_back(e.to_string());
  out["endpoints"] = std::move(endpoints);
  out["home_relay"] = p.home_relay;
  out["online"] = p.online;
  out["last_seen"] = p.last_seen;
  out["tags"] = p.tags;
  out["routes"] = Json::array();
  return out;
}

std::string json_map(const std::vector<control::PeerInfo>& peers) {
  Json out = Json::object();
  out["v"] = 1;
  out["type"] = "peer_map";
  out["version"] = 1;
  Json list = Json::array();
  for (const auto& p : peers) list.push_back(json_peer(p));
  out["peers"] = std::move(list);
  return out.dump();
}

bool json_read_key(const nlohmann::json& v, wg::PublicKey& out) {
  if (!v.is_string()) return false;
  auto bytes = from_base64(v.get_ref<const std::string&>());
  if (!bytes || bytes->size() != out.size()) return false;
  std::copy(bytes->begin(), bytes->end(), out.begin());
  return true;
}

std::size_t json_parse(const std::string& text) {
  auto root = nlohmann::json::parse(text, nullptr, false);
  std::size_t ok = 0;
  for (const auto& v : root["peers"]) {
    control::PeerInfo p;
    p.name = v["name"].get<std::string>();
    if (!json_read_key(v["node_key"], p.node_key) || !json_read_key(v["disco_key"], p.disco_key))
      continue;
    auto v4 = IpAddress::parse(v["ipv4"].get<std::string>());
    auto v6 = IpAddress::parse(v["ipv6"].get<std::string>());
    if (!v4 || !v6) continue;
    for (const auto& e : v["endpoints"])
      if (auto parsed = Endpoint::parse(e.get<std::string>())) p.endpoints.push_back(*parsed);
    p.home_relay = v["home_relay"].get<std::string>();
    p.online = v["online"].get<bool>();
    p.last_seen = v["last_seen"].get<std::int64_t>();
    ++ok;
  }
  return ok;
}

// ---- zlib ----

std::string deflate(const std::string& in, int level) {
  uLongf size = compressBound(in.size());
  std::string out(size, '\0');
  compress2(reinterpret_cast<Bytef*>(out.data()), &size,
            reinterpret_cast<const Bytef*>(in.data()), in.size(), level);
  out.resize(size);
  return out;
}

std::string inflate(const std::string& in, std::size_t original) {
  uLongf size = original;
  std::string out(size, '\0');
  uncompress(reinterpret_cast<Bytef*>(out.data()), &size,
             reinterpret_cast<const Bytef*>(in.data()), in.size());
  out.resize(size);
  return out;
}

template <typename F>
double ns_per_peer(std::size_t peers, int rounds, F f) {
  const auto start = Clock::now();
  for (int r = 0; r < rounds; ++r) f();
  const double ns = std::chrono::duration<double, std::nano>(Clock::now() - start).count();
  return ns / rounds / static_cast<double>(peers);
}

}  // namespace

int main(int argc, char** argv) {
  std::size_t n = 10000;
  int rounds = 5;
  CLI::App app("peer_codec_bench: bytes and CPU of a peer entry, JSON v1 against binary");
  app.add_option("--peers", n, "peers in the map")->capture_default_str();
  app.add_option("--rounds", rounds, "times each step runs")->capture_default_str();
  CLI11_PARSE(app, argc, argv);

  const auto peers = make_peers(n);
  const control::PeerMap map{1, peers};
  const double count = static_cast<double>(n);

  std::string json;
  const double json_encode = ns_per_peer(n, rounds, [&] { json = json_map(peers); });
  std::size_t parsed = 0;
  const double json_decode = ns_per_peer(n, rounds, [&] { parsed = json_parse(json); });
  if (parsed != n) std::fprintf(stderr, "JSON: only %zu of %zu parsed\n", parsed, n);

  std::vector<std::string> pages;
  const double bin_encode = ns_per_peer(n, rounds, [&] { pages = control::encode_pages(map); });
  std::size_t bin_bytes = 0;
  for (const auto& p : pages) bin_bytes += p.size();
  std::size_t bin_parsed = 0;
  const double bin_decode = ns_per_peer(n, rounds, [&] {
    bin_parsed = 0;
    for (const auto& p : pages) {
      auto r = control::parse_message(p);
      if (auto* page = std::get_if<control::PeerMapPage>(&r)) bin_parsed += page->peers.size();
    }
  });
  if (bin_parsed != n) std::fprintf(stderr, "binary: only %zu of %zu parsed\n", bin_parsed, n);

  std::printf("%zu peers, %d rounds; per peer entry:\n\n", n, rounds);
  std::printf("%-22s %10s %14s %14s\n", "form", "bytes", "encode ns", "decode ns");
  std::printf("%-22s %10.1f %14.0f %14.0f\n", "JSON (v1)", static_cast<double>(json.size()) / count,
              json_encode, json_decode);
  std::printf("%-22s %10.1f %14.0f %14.0f\n", "binary (pages)",
              static_cast<double>(bin_bytes) / count, bin_encode, bin_decode);
  for (int level : {1, 6}) {
    for (int form = 0; form < 2; ++form) {
      const std::string whole = form == 0 ? json : [&] {
        std::string all;
        for (const auto& p : pages) all += p;
        return all;
      }();
      std::string packed;
      const double zip = ns_per_peer(n, rounds, [&] { packed = deflate(whole, level); });
      std::string back;
      const double unzip = ns_per_peer(n, rounds, [&] { back = inflate(packed, whole.size()); });
      if (back != whole) std::fprintf(stderr, "zlib round trip failed\n");
      char label[40];
      std::snprintf(label, sizeof label, "%s + zlib %d", form == 0 ? "JSON" : "binary", level);
      std::printf("%-22s %10.1f %14.0f %14.0f   (+ the form's own encode/decode)\n", label,
                  static_cast<double>(packed.size()) / count, zip, unzip);
    }
  }
  std::printf(
      "\nA join in a mesh of N nodes sends the joiner N entries and every other agent one: the\n"
      "coordinator encodes each entry once, but every agent decodes every entry, so decode CPU\n"
      "and bytes are what scale with N^2.\n");
  return 0;
}
