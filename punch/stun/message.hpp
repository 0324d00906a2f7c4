// The STUN codec: recognising, parsing and building binding messages. Sans-I/O, no clock; the
// wire format is drawn in punch/stun/wire.hpp.
//
//   if (punch::looks_like_stun(datagram)) { ... }          // the agent's demultiplexer
//   punch::StunMessage m;
//   if (punch::parse_stun(datagram, m) == punch::StunError::ok && m.xor_mapped) ...
//   Bytes req = punch::build_binding_request(id, {.change_flags = stun::kChangeIp});
//
// Parsing treats its input as hostile: every defect is a StunError value, nothing is read past
// the datagram, and what is kept from a message is bounded (kMaxUnknown, kMaxText).
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/bytes.hpp"
#include "base/ip.hpp"
#include "punch/stun/wire.hpp"

namespace knit::punch {

// RFC 8489's 96-bit transaction id (the cookie is not part of it).
using StunTransactionId = std::array<std::uint8_t, stun::kTransactionIdSize>;
// Header bytes 4..19: cookie ‖ transaction id, or RFC 3489's 128-bit id.
using StunRawId = std::array<std::uint8_t, 16>;

StunRawId raw_id_of(const StunTransactionId& id);

enum class StunError {
  ok,
  too_short,             // fewer than the 20 header bytes
  not_stun,              // one of the two top bits of the type is set
  bad_length,            // header length not a multiple of 4, or not the datagram's size
  bad_cookie,            // no magic cookie (and RFC 3489 not allowed here)
  truncated_attribute,   // an attribute header or value runs past the end
  bad_address,           // an address attribute with a bad family or size
  bad_attribute,         // another known attribute with a malformed value
  fingerprint_not_last,  // an attribute after FINGERPRINT
  bad_fingerprint,       // FINGERPRINT present and wrong
};
std::string_view to_string(StunError error);

struct StunParseOptions {
  // Accept RFC 3489 messages (no magic cookie). Only a binding request qualifies; a server
  // sets this, a client never needs it.
  bool allow_classic = false;
};

struct StunErrorCode {
  int code = 0;  // 300..699
  std::string reason{};
};

// Everything Knit reads from a binding message. Only the first instance of an attribute counts
// (RFC 8489 §14: later duplicates are ignored).
struct StunMessage {
  std::uint16_t type = 0;
  StunRawId raw_id{};
  bool classic = false;  // RFC 3489: no magic cookie

  std::optional<Endpoint> xor_mapped{};       // XOR-MAPPED-ADDRESS
  std::optional<Endpoint> mapped{};           // MAPPED-ADDRESS
  std::optional<Endpoint> response_origin{};  // RESPONSE-ORIGIN (RFC 5780)
  std::optional<Endpoint> other_address{};    // OTHER-ADDRESS (RFC 5780)
  std::optional<Endpoint> source_address{};   // SOURCE-ADDRESS (RFC 3489)
  std::optional<Endpoint> changed_address{};  // CHANGED-ADDRESS (RFC 3489)
  std::optional<std::uint8_t> change_flags{}; // CHANGE-REQUEST, masked to kChangeIp | kChangePort
  std::optional<std::uint16_t> response_port{};
  std::optional<StunErrorCode> error_code{};
  std::vector<std::uint16_t> unknown_attributes{};  // UNKNOWN-ATTRIBUTES of a 420 answer
  std::string software{};                     // SOFTWARE (bounded to kMaxText)
  std::size_t padding_size = 0;             // PADDING value length
  bool has_fingerprint = false;             // present and verified (a bad one fails parsing)
  // Comprehension-required attribute types this codec does not know (first kMaxUnknown);
  // unknown_required_count counts them all.
  std::vector<std::uint16_t> unknown_required{};
  std::size_t unknown_required_count = 0;

  stun::MessageClass message_class() const { return stun::class_of(type); }
  std::uint16_t method() const { return stun::method_of(type); }
  StunTransactionId transaction_id() const;
  // The reflexive address: XOR-MAPPED-ADDRESS, else MAPPED-ADDRESS.
  std::optional<Endpoint> reflexive() const { return xor_mapped ? xor_mapped : mapped; }
};

// The demultiplexer's strict test: top two bits zero, length a multiple of 4 matching the
// datagram, and the magic cookie — or, when allow_classic, an RFC 3489 binding request (type
// 0x0001, no cookie). WireGuard (first byte 1..4) and disco ("KNIT") never pass.
bool looks_like_stun(ByteSpan datagram, bool allow_classic = false);

StunError parse_stun(ByteSpan datagram, StunMessage& out, const StunParseOptions& options = {});

// CRC-32 (ISO HDLC, as zlib's crc32) — FINGERPRINT's checksum before the XOR.
std::uint32_t stun_crc32(ByteSpan bytes);

// Writes one message: header first, then attributes; finish() fixes the length and appends
// FINGERPRINT when asked. Attributes that would pass kMaxBuiltMessage are left out and
// counted in dropped(), so building never fails.
class StunBuilder {
 public:
  StunBuilder(std::uint16_t type, const StunRawId& raw_id);

  void add_address(std::uint16_t attribute, const Endpoint& endpoint);
  void add_xor_address(std::uint16_t attribute, const Endpoint& endpoint);
  void add_u32(std::uint16_t attribute, std::uint32_t value);
  void add_bytes(std::uint16_t attribute, ByteSpan value);
  void add_text(std::uint16_t attribute, std::string_view text);
  void add_error_code(int code, std::string_view reason);
  void add_unknown_attributes(const std::vector<std::uint16_t>& types);
  // PADDING of `size` zero bytes (rounded down to a multiple of 4, clamped to the room left).
  void add_padding(std::size_t size);

  std::size_t size() const { return bytes_.size(); }
  std::size_t dropped() const { return dropped_; }
  Bytes finish(bool fingerprint);

 private:
  std::uint8_t* reserve(std::uint16_t attribute, std::size_t length);

  Bytes bytes_;
  StunRawId raw_id_;
  std::size_t dropped_ = 0;
};

struct BindingRequestOptions {
  std::optional<std::uint8_t> change_flags{};// CHANGE-REQUEST (RFC 5780); nullopt: none
  std::string_view software{};                 // empty: no SOFTWARE
  bool fingerprint = true;
};
Bytes build_binding_request(const StunTransactionId& id, const BindingRequestOptions& options = {});

// An RFC 3489 request (no cookie), for tests of the server's classic path.
Bytes build_classic_binding_request(const StunRawId& id, std::optional<std::uint8_t> change_flags);

}  // namespace knit::punch
