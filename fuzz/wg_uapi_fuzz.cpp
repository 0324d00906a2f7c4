// The UAPI codec (wg/uapi.hpp): any bytes on /var/run/wireguard/<if>.sock. Properties: the
// events do not depend on how the stream is cut into reads (all at once, or in the chunks the
// input picks); every Set re-encoded as a `set=1` request parses to the same Set; format_get
// of what a Set configured ends in "errno=0\n\n".
#include <cstddef>
#include <cstdint>
#include <string>
#include <variant>
#include <vector>

#include "base/bytes.hpp"
#include "fuzz/fuzz_util.hpp"
#include "wg/uapi.hpp"

using namespace knit;
using namespace knit::wg;

namespace {

std::string hex_of(std::span<const std::uint8_t> key) { return to_hex(ByteSpan(key.data(), key.size())); }

// One line per event, with every field of a Set.
std::string describe(const UapiParser::Event& event) {
  if (std::holds_alternative<UapiParser::Get>(event)) return "get\n";
  if (const auto* e = std::get_if<UapiParser::Error>(&event))
    return "error " + std::to_string(e->errno_value) + "\n";
  const UapiSet& s = std::get<UapiParser::Set>(event).request;
  std::string out = "set";
  if (s.private_key) out += " private_key=" + hex_of(s.private_key->span());
  if (s.listen_port) out += " listen_port=" + std::to_string(*s.listen_port);
  if (s.fwmark) out += " fwmark=" + std::to_string(*s.fwmark);
  if (s.replace_peers) out += " replace_peers";
  for (const UapiPeerSet& p : s.peers) {
    out += "\n  peer " + hex_of(p.public_key);
    if (p.remove) out += " remove";
    if (p.update_only) out += " update_only";
    if (p.preshared_key) out += " psk=" + hex_of(p.preshared_key->span());
    if (p.endpoint) out += " endpoint=" + p.endpoint->to_string();
    if (p.persistent_keepalive_interval)
      out += " keepalive=" + std::to_string(*p.persistent_keepalive_interval);
    if (p.replace_allowed_ips) out += " replace_allowed_ips";
    for (const IpPrefix& a : p.allowed_ips) out += " " + a.to_string();
  }
  return out + "\n";
}

// A Set as the request text `wg` would send for it.
std::string encode_set(const UapiSet& s) {
  std::string out = "set=1\n";
  if (s.private_key) out += "private_key=" + hex_of(s.private_key->span()) + "\n";
  if (s.listen_port) out += "listen_port=" + std::to_string(*s.listen_port) + "\n";
  if (s.fwmark) out += "fwmark=" + std::to_string(*s.fwmark) + "\n";
  if (s.replace_peers) out += "replace_peers=true\n";
  for (const UapiPeerSet& p : s.peers) {
    out += "public_key=" + hex_of(p.public_key) + "\n";
    if (p.remove) out += "remove=true\n";
    if (p.update_only) out += "update_only=true\n";
    if (p.preshared_key) out += "preshared_key=" + hex_of(p.preshared_key->span()) + "\n";
    if (p.endpoint) out += "endpoint=" + p.endpoint->to_string() + "\n";
    if (p.persistent_keepalive_interval)
      out += "persistent_keepalive_interval=" + std::to_string(*p.persistent_keepalive_interval) + "\n";
    if (p.replace_allowed_ips) out += "replace_allowed_ips=true\n";
    for (const IpPrefix& a : p.allowed_ips) out += "allowed_ip=" + a.to_string() + "\n";
  }
  return out + "\n";
}

std::vector<UapiParser::Event> run(const std::string& stream, const std::vector<std::size_t>& cuts,
                                   bool& fatal) {
  UapiParser parser;
  std::vector<UapiParser::Event> events;
  std::size_t at = 0;
  for (std::size_t i = 0; at < stream.size(); ++i) {
    const std::size_t n = i < cuts.size() ? std::min(cuts[i], stream.size() - at) : stream.size() - at;
    parser.feed(std::string_view(stream).substr(at, n));
    at += n;
    while (true) {
      auto event = parser.next();
      if (std::holds_alternative<UapiParser::NeedMore>(event)) break;
      events.push_back(std::move(event));
    }
  }
  fatal = parser.fatal();
  return events;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  // Input: cut count u8 (mod 9) | cut sizes u8 each | the stream.
  fuzz::Reader in(data, size);
  std::vector<std::size_t> cuts;
  const std::size_t ncuts = in.u8() % 9;
  for (std::size_t i = 0; i < ncuts; ++i) cuts.push_back(1 + in.u8() % 64);
  const Bytes raw = in.rest();
  const std::string stream(raw.begin(), raw.end());

  bool fatal_whole = false, fatal_cut = false;
  const auto whole = run(stream, {}, fatal_whole);
  const auto cut = run(stream, cuts, fatal_cut);
  std::string a, b;
  for (const auto& e : whole) a += describe(e);
  for (const auto& e : cut) b += describe(e);
  if (!fatal_whole && !fatal_cut && a != b) {
    std::fprintf(stderr, "events depend on how the stream is cut:\n--- whole\n%s--- cut\n%s", a.c_str(),
                 b.c_str());
    KNIT_FUZZ_CHECK(false);
  }

  for (const auto& event : whole) {
    const auto* set = std::get_if<UapiParser::Set>(&event);
    if (set == nullptr) continue;
    bool fatal = false;
    const auto again = run(encode_set(set->request), {}, fatal);
    KNIT_FUZZ_CHECK(again.size() == 1);
    if (describe(again[0]) != describe(event)) {
      std::fprintf(stderr, "a Set does not survive re-encoding:\n%s%s", describe(event).c_str(),
                   describe(again[0]).c_str());
      KNIT_FUZZ_CHECK(false);
    }
    UapiDeviceState state;
    state.private_key = set->request.private_key;
    state.listen_port = set->request.listen_port.value_or(0);
    state.fwmark = set->request.fwmark.value_or(0);
    for (const UapiPeerSet& p : set->request.peers) {
      UapiPeerState peer;
      peer.public_key = p.public_key;
      peer.endpoint = p.endpoint;
      peer.allowed_ips = p.allowed_ips;
      state.peers.push_back(std::move(peer));
    }
    const std::string get = format_get(state);
    KNIT_FUZZ_CHECK(get.size() >= 9 && get.compare(get.size() - 9, 9, "errno=0\n\n") == 0);
  }
  return 0;
}
