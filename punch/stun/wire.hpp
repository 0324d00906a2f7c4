// STUN on the wire: every size, type and constant of RFC 8489 (binding), RFC 5780 (NAT behaviour
// discovery) and RFC 3489 (classic STUN, for old clients such as Debian's `stun`).
//
// Header, 20 bytes (RFC 8489 §5):
//
//    0                   1                   2                   3
//    0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//   |0 0|     STUN Message Type     |         Message Length        |
//   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//   |                 Magic Cookie 0x2112A442                       |
//   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//   |                Transaction ID (96 bits)                       |
//   |                                                               |
//   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//
//   Message type: M11..M7 C1 M6..M4 C0 M3..M0 (method bits M, class bits C; §5).
//   Length: bytes after the header, always a multiple of 4.
//   RFC 3489 has no cookie: bytes 4..19 are one 128-bit transaction id. Either way the XOR key
//   of XOR-MAPPED-ADDRESS is header bytes 4..19 (cookie ‖ transaction id).
//
// Attributes follow, each padded to 4 bytes (the length field holds the unpadded length):
//
//   |         Type                  |            Length             |
//   |                         Value (variable)            ....  pad   |
//
// Address attributes (MAPPED-ADDRESS, RESPONSE-ORIGIN, OTHER-ADDRESS, SOURCE-ADDRESS,
// CHANGED-ADDRESS; XOR-MAPPED-ADDRESS with port ^ 0x2112 and address ^ key), §14.1:
//
//   |0 0 0 0 0 0 0 0|    Family     |           Port                |
//   |                 Address (32 bits IPv4 = 1, 128 bits IPv6 = 2)  |
//
// CHANGE-REQUEST (RFC 5780 §7.2): 32 bits, flag A 0x04 "change IP", B 0x02 "change port".
// RESPONSE-PORT (§7.5): 16-bit port + 16 bits padding. PADDING (§7.6): any bytes.
// ERROR-CODE (RFC 8489 §14.8): 21 zero bits, class (3 bits, 3..6), number (8 bits, 0..99),
//   UTF-8 reason phrase (< 128 characters).
// UNKNOWN-ATTRIBUTES (§14.9): a list of 16-bit types.
// FINGERPRINT (§14.7): last attribute; CRC-32 (ISO HDLC) of everything before it, with the
//   header length already counting its 8 bytes, XOR 0x5354554E.
#pragma once

#include <cstddef>
#include <cstdint>

namespace knit::punch::stun {

inline constexpr std::uint32_t kMagicCookie = 0x2112A442;
inline constexpr std::size_t kHeaderSize = 20;
inline constexpr std::size_t kTransactionIdSize = 12;
inline constexpr std::size_t kAttributeHeaderSize = 4;
inline constexpr std::uint32_t kFingerprintXor = 0x5354554E;
inline constexpr std::size_t kFingerprintSize = 8;  // attribute header + CRC

// The largest datagram we build: answers never exceed a conservative path MTU payload, so a
// PADDING echo (RFC 5780 §7.6) cannot make us send more than we received or fragment.
inline constexpr std::size_t kMaxBuiltMessage = 1472;
// Longest SOFTWARE / reason phrase kept or sent (RFC 8489 §14.14: < 128 characters, ≤ 763 bytes).
inline constexpr std::size_t kMaxText = 763;
// Unknown comprehension-required attributes remembered per message (and echoed in a 420).
inline constexpr std::size_t kMaxUnknown = 16;

// Message types (method binding = 0x001).
inline constexpr std::uint16_t kBindingRequest = 0x0001;
inline constexpr std::uint16_t kBindingIndication = 0x0011;
inline constexpr std::uint16_t kBindingSuccess = 0x0101;
inline constexpr std::uint16_t kBindingError = 0x0111;

// Attribute types. Below 0x8000 a receiver must understand them (comprehension-required).
inline constexpr std::uint16_t kMappedAddress = 0x0001;
inline constexpr std::uint16_t kResponseAddress = 0x0002;  // RFC 3489; not honoured (reflection)
inline constexpr std::uint16_t kChangeRequest = 0x0003;
inline constexpr std::uint16_t kSourceAddress = 0x0004;    // RFC 3489
inline constexpr std::uint16_t kChangedAddress = 0x0005;   // RFC 3489
inline constexpr std::uint16_t kUsername = 0x0006;
inline constexpr std::uint16_t kMessageIntegrity = 0x0008;
inline constexpr std::uint16_t kErrorCode = 0x0009;
inline constexpr std::uint16_t kUnknownAttributes = 0x000A;
inline constexpr std::uint16_t kReflectedFrom = 0x000B;   // RFC 3489
inline constexpr std::uint16_t kRealm = 0x0014;
inline constexpr std::uint16_t kNonce = 0x0015;
inline constexpr std::uint16_t kMessageIntegritySha256 = 0x001C;
inline constexpr std::uint16_t kXorMappedAddress = 0x0020;
inline constexpr std::uint16_t kPadding = 0x0026;
inline constexpr std::uint16_t kResponsePort = 0x0027;
inline constexpr std::uint16_t kXorMappedAddressOld = 0x8020;  // pre-RFC drafts (stund)
inline constexpr std::uint16_t kSoftware = 0x8022;
inline constexpr std::uint16_t kAlternateServer = 0x8023;
inline constexpr std::uint16_t kFingerprint = 0x8028;
inline constexpr std::uint16_t kResponseOrigin = 0x802B;
inline constexpr std::uint16_t kOtherAddress = 0x802C;

inline constexpr std::uint8_t kFamilyV4 = 0x01;
inline constexpr std::uint8_t kFamilyV6 = 0x02;

// CHANGE-REQUEST flags.
inline constexpr std::uint8_t kChangeIp = 0x04;
inline constexpr std::uint8_t kChangePort = 0x02;

// Error codes we send or interpret.
inline constexpr int kErrorBadRequest = 400;
inline constexpr int kErrorUnknownAttribute = 420;

// Method and class from a message type (RFC 8489 §5, figure 3).
inline constexpr std::uint16_t method_of(std::uint16_t type) {
  return static_cast<std::uint16_t>((type & 0x000F) | ((type & 0x00E0) >> 1) | ((type & 0x3E00) >> 2));
}
enum class MessageClass : std::uint8_t { request = 0, indication = 1, success = 2, error = 3 };
inline constexpr MessageClass class_of(std::uint16_t type) {
  return static_cast<MessageClass>(((type >> 4) & 1) | ((type >> 7) & 2));
}

}  // namespace knit::punch::stun
