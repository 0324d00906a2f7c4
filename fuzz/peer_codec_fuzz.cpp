// The binary peer messages (control/peer_codec.hpp): a page of the peer map or a peer delta, as
// an agent reads them from its coordinator. Properties: what parses is encoded again, field by
// field, into bytes that parse to the same message; and it encodes as JSON into a message that
// parses to the same value too (the two forms carry the same fields with the same rules).
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <string>
#include <string_view>
#include <variant>

#include "control/messages.hpp"
#include "control/peer_codec.hpp"
#include "fuzz/fuzz_util.hpp"

using namespace knit;

namespace {

std::string encode_binary(const control::PeerMapPage& page) {
  const control::V6Base base = control::v6_base_of(page.peers);
  std::string out = control::page_header(page.version, page.index, page.count, base, page.peers.size());
  for (const auto& peer : page.peers) control::append_peer(out, peer, base);
  return out;
}

std::string encode_binary(const control::PeerDelta& delta) {
  std::vector<control::PeerInfo> all = delta.added;
  all.insert(all.end(), delta.changed.begin(), delta.changed.end());
  const control::V6Base base = control::v6_base_of(all);
  std::string out = control::delta_header(delta.version, base);
  control::append_count(out, delta.added.size());
  for (const auto& peer : delta.added) control::append_peer(out, peer, base);
  control::append_count(out, delta.changed.size());
  for (const auto& peer : delta.changed) control::append_peer(out, peer, base);
  control::append_count(out, delta.removed.size());
  for (const auto& key : delta.removed) control::append_key(out, key);
  return out;
}

std::optional<control::Message> parse(std::string_view text) {
  control::ParseResult parsed = control::parse_message(text);
  if (const auto* error = std::get_if<control::ParseError>(&parsed)) {
    std::fprintf(stderr, "re-encoded message does not parse: %s\n", error->describe().c_str());
    return std::nullopt;
  }
  return control::to_message(std::move(parsed));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  if (text.empty() || static_cast<std::uint8_t>(text[0]) != control::kBinaryTag) return 0;
  control::ParseResult parsed = control::parse_binary(text);
  if (const auto* error = std::get_if<control::ParseError>(&parsed)) {
    (void)error->describe();
    return 0;
  }
  const std::optional<control::Message> message = control::to_message(std::move(parsed));
  KNIT_FUZZ_CHECK(message.has_value());
  // policy_rules (binary too, its rules opaque here) round-trips on its own; it has no JSON form.
  if (const auto* policy = std::get_if<control::PolicyRules>(&*message)) {
    const std::optional<control::Message> again = parse(control::encode(*policy));
    KNIT_FUZZ_CHECK(again.has_value() && *again == *message);
    return 0;
  }
  std::string binary;
  if (const auto* page = std::get_if<control::PeerMapPage>(&*message)) binary = encode_binary(*page);
  else if (const auto* delta = std::get_if<control::PeerDelta>(&*message)) binary = encode_binary(*delta);
  else KNIT_FUZZ_CHECK(!"parse_binary returned neither a page, a delta nor policy rules");
  const std::optional<control::Message> again = parse(binary);
  KNIT_FUZZ_CHECK(again.has_value());
  KNIT_FUZZ_CHECK(*again == *message);
  const std::optional<control::Message> from_json = parse(control::encode(*message));
  KNIT_FUZZ_CHECK(from_json.has_value());
  KNIT_FUZZ_CHECK(*from_json == *message);
  return 0;
}
