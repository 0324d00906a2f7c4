#include "punch/stun/message.hpp"

#include <algorithm>
#include <cstring>

namespace knit::punch {

using namespace stun;

namespace {

constexpr std::array<std::uint32_t, 256> make_crc_table() {
  std::array<std::uint32_t, 256> table{};
  for (std::uint32_t i = 0; i < 256; ++i) {
    std::uint32_t c = i;
    for (int k = 0; k < 8; ++k) c = (c & 1) ? (0xEDB88320u ^ (c >> 1)) : (c >> 1);
    table[i] = c;
  }
  return table;
}
constexpr auto kCrcTable = make_crc_table();

constexpr std::size_t padded(std::size_t n) { return (n + 3) & ~std::size_t{3}; }

bool has_cookie(ByteSpan b) { return load_be32(b.data() + 4) == kMagicCookie; }

// A comprehension-required attribute we understand but do not act on: authentication belongs
// to TURN, and a binding server without credentials processes the request as if unsigned.
bool known_ignored(std::uint16_t type) {
  switch (type) {
    case kUsername:
    case kMessageIntegrity:
    case kMessageIntegritySha256:
    case kRealm:
    case kNonce:
    case kReflectedFrom:
      return true;
    default:
      return false;
  }
}

// Reads an address attribute value; XORed ones use key = header bytes 4..19.
std::optional<Endpoint> read_address(ByteSpan value, const std::uint8_t* key, bool xored) {
  if (value.size() < 4) return std::nullopt;
  const std::uint8_t family = value[1];
  std::uint16_t port = load_be16(value.data() + 2);
  if (xored) port ^= static_cast<std::uint16_t>(kMagicCookie >> 16);
  std::uint8_t addr[16];
  std::size_t n;
  if (family == kFamilyV4 && value.size() == 8) n = 4;
  else if (family == kFamilyV6 && value.size() == 20) n = 16;
  else return std::nullopt;
  for (std::size_t i = 0; i < n; ++i) addr[i] = static_cast<std::uint8_t>(value[4 + i] ^ (xored ? key[i] : 0));
  return Endpoint(n == 4 ? IpAddress::v4(addr) : IpAddress::v6(addr), port);
}

std::string read_text(ByteSpan value) {
  const std::size_t n = std::min(value.size(), kMaxText);
  return std::string(reinterpret_cast<const char*>(value.data()), n);
}

}  // namespace

StunRawId raw_id_of(const StunTransactionId& id) {
  StunRawId raw{};
  store_be32(raw.data(), kMagicCookie);
  std::memcpy(raw.data() + 4, id.data(), id.size());
  return raw;
}

StunTransactionId StunMessage::transaction_id() const {
  StunTransactionId id{};
  std::memcpy(id.data(), raw_id.data() + 4, id.size());
  return id;
}

std::string_view to_string(StunError error) {
  switch (error) {
    case StunError::ok: return "ok";
    case StunError::too_short: return "too short";
    case StunError::not_stun: return "not STUN";
    case StunError::bad_length: return "bad length";
    case StunError::bad_cookie: return "no magic cookie";
    case StunError::truncated_attribute: return "truncated attribute";
    case StunError::bad_address: return "bad address attribute";
    case StunError::bad_attribute: return "bad attribute";
    case StunError::fingerprint_not_last: return "attribute after FINGERPRINT";
    case StunError::bad_fingerprint: return "bad FINGERPRINT";
  }
  return "?";
}

std::uint32_t stun_crc32(ByteSpan bytes) {
  std::uint32_t c = 0xFFFFFFFFu;
  for (std::uint8_t b : bytes) c = kCrcTable[(c ^ b) & 0xFF] ^ (c >> 8);
  return c ^ 0xFFFFFFFFu;
}

bool looks_like_stun(ByteSpan b, bool allow_classic) {
  if (b.size() < kHeaderSize || (b[0] & 0xC0) != 0) return false;
  const std::size_t length = load_be16(b.data() + 2);
  if (length % 4 != 0 || kHeaderSize + length != b.size()) return false;
  if (has_cookie(b)) return true;
  return allow_classic && load_be16(b.data()) == kBindingRequest;
}

StunError parse_stun(ByteSpan b, StunMessage& out, const StunParseOptions& options) {
  out = StunMessage{};
  if (b.size() < kHeaderSize) return StunError::too_short;
  if ((b[0] & 0xC0) != 0) return StunError::not_stun;
  const std::size_t length = load_be16(b.data() + 2);
  if (length % 4 != 0 || kHeaderSize + length != b.size()) return StunError::bad_length;
  out.type = load_be16(b.data());
  std::memcpy(out.raw_id.data(), b.data() + 4, out.raw_id.size());
  if (!has_cookie(b)) {
    if (!options.allow_classic || out.type != kBindingRequest) return StunError::bad_cookie;
    out.classic = true;
  }
  const std::uint8_t* key = b.data() + 4;

  std::size_t off = kHeaderSize;
  while (off < b.size()) {
    if (b.size() - off < kAttributeHeaderSize) return StunError::truncated_attribute;
    const std::uint16_t type = load_be16(b.data() + off);
    const std::size_t len = load_be16(b.data() + off + 2);
    if (padded(len) > b.size() - off - kAttributeHeaderSize) return StunError::truncated_attribute;
    const ByteSpan value = b.subspan(off + kAttributeHeaderSize, len);
    const std::size_t attribute_start = off;
    off += kAttributeHeaderSize + padded(len);

    if (out.has_fingerprint) return StunError::fingerprint_not_last;
    auto address = [&](std::optional<Endpoint>& slot, bool xored) {
      if (slot) return true;  // first instance wins
      slot = read_address(value, key, xored);
      return slot.has_value();
    };
    switch (type) {
      case kXorMappedAddress:
        if (!address(out.xor_mapped, true)) return StunError::bad_address;
        break;
      case kMappedAddress:
        if (!address(out.mapped, false)) return StunError::bad_address;
        break;
      case kResponseOrigin:
        if (!address(out.response_origin, false)) return StunError::bad_address;
        break;
      case kOtherAddress:
        if (!address(out.other_address, false)) return StunError::bad_address;
        break;
      case kSourceAddress:
        if (!address(out.source_address, false)) return StunError::bad_address;
        break;
      case kChangedAddress:
        if (!address(out.changed_address, false)) return StunError::bad_address;
        break;
      case kChangeRequest:
        if (len != 4) return StunError::bad_attribute;
        if (!out.change_flags) out.change_flags = static_cast<std::uint8_t>(value[3] & (kChangeIp | kChangePort));
        break;
      case kResponsePort:
        if (len != 4) return StunError::bad_attribute;
        if (!out.response_port) out.response_port = load_be16(value.data());
        break;
      case kPadding:
        out.padding_size = len;
        break;
      case kErrorCode: {
        if (len < 4) return StunError::bad_attribute;
        const int cls = value[2] & 0x07;
        const int number = value[3];
        if (cls < 3 || cls > 6 || number > 99) return StunError::bad_attribute;
        if (!out.error_code) out.error_code = StunErrorCode{cls * 100 + number, read_text(value.subspan(4))};
        break;
      }
      case kUnknownAttributes:
        if (len % 2 != 0) return StunError::bad_attribute;
        for (std::size_t i = 0; i + 1 < len && out.unknown_attributes.size() < kMaxUnknown; i += 2)
          out.unknown_attributes.push_back(load_be16(value.data() + i));
        break;
      case kSoftware:
        if (out.software.empty()) out.software = read_text(value);
        break;
      case kFingerprint: {
        if (out.classic) break;  // RFC 3489 predates it: an ordinary unknown optional attribute
        if (len != 4) return StunError::bad_attribute;
        if (off != b.size()) return StunError::fingerprint_not_last;
        const std::uint32_t want = stun_crc32(b.first(attribute_start)) ^ kFingerprintXor;
        if (load_be32(value.data()) != want) return StunError::bad_fingerprint;
        out.has_fingerprint = true;
        break;
      }
      default:
        if (type < 0x8000 && !known_ignored(type)) {
          if (out.unknown_required.size() < kMaxUnknown) out.unknown_required.push_back(type);
          ++out.unknown_required_count;
        }
        break;
    }
  }
  return StunError::ok;
}

StunBuilder::StunBuilder(std::uint16_t type, const StunRawId& raw_id) : raw_id_(raw_id) {
  bytes_.reserve(256);
  bytes_.resize(kHeaderSize);
  store_be16(bytes_.data(), type);
  std::memcpy(bytes_.data() + 4, raw_id.data(), raw_id.size());
}

std::uint8_t* StunBuilder::reserve(std::uint16_t attribute, std::size_t length) {
  // Room is kept for a FINGERPRINT, so finish() can always add one.
  const std::size_t need = kAttributeHeaderSize + padded(length);
  if (bytes_.size() + need + kFingerprintSize > kMaxBuiltMessage) {
    ++dropped_;
    return nullptr;
  }
  const std::size_t at = bytes_.size();
  bytes_.resize(at + need, 0);
  store_be16(bytes_.data() + at, attribute);
  store_be16(bytes_.data() + at + 2, static_cast<std::uint16_t>(length));
  return bytes_.data() + at + kAttributeHeaderSize;
}

void StunBuilder::add_address(std::uint16_t attribute, const Endpoint& endpoint) {
  const std::size_t n = endpoint.address().size();
  std::uint8_t* p = reserve(attribute, 4 + n);
  if (p == nullptr) return;
  p[1] = endpoint.address().is_v4() ? kFamilyV4 : kFamilyV6;
  store_be16(p + 2, endpoint.port());
  std::memcpy(p + 4, endpoint.address().bytes(), n);
}

void StunBuilder::add_xor_address(std::uint16_t attribute, const Endpoint& endpoint) {
  const std::size_t n = endpoint.address().size();
  std::uint8_t* p = reserve(attribute, 4 + n);
  if (p == nullptr) return;
  p[1] = endpoint.address().is_v4() ? kFamilyV4 : kFamilyV6;
  store_be16(p + 2, static_cast<std::uint16_t>(endpoint.port() ^ (kMagicCookie >> 16)));
  for (std::size_t i = 0; i < n; ++i)
    p[4 + i] = static_cast<std::uint8_t>(endpoint.address().bytes()[i] ^ raw_id_[i]);
}

void StunBuilder::add_u32(std::uint16_t attribute, std::uint32_t value) {
  if (std::uint8_t* p = reserve(attribute, 4)) store_be32(p, value);
}

void StunBuilder::add_bytes(std::uint16_t attribute, ByteSpan value) {
  if (value.size() > 0xFFFF) {
    ++dropped_;
    return;
  }
  if (std::uint8_t* p = reserve(attribute, value.size()))
    if (!value.empty()) std::memcpy(p, value.data(), value.size());
}

void StunBuilder::add_text(std::uint16_t attribute, std::string_view text) {
  text = text.substr(0, kMaxText);
  add_bytes(attribute, {reinterpret_cast<const std::uint8_t*>(text.data()), text.size()});
}

void StunBuilder::add_error_code(int code, std::string_view reason) {
  reason = reason.substr(0, 127);
  std::uint8_t* p = reserve(kErrorCode, 4 + reason.size());
  if (p == nullptr) return;
  p[2] = static_cast<std::uint8_t>((code / 100) & 0x07);
  p[3] = static_cast<std::uint8_t>(code % 100);
  if (!reason.empty()) std::memcpy(p + 4, reason.data(), reason.size());
}

void StunBuilder::add_unknown_attributes(const std::vector<std::uint16_t>& types) {
  std::uint8_t* p = reserve(kUnknownAttributes, 2 * types.size());
  if (p == nullptr) return;
  for (std::size_t i = 0; i < types.size(); ++i) store_be16(p + 2 * i, types[i]);
}

void StunBuilder::add_padding(std::size_t size) {
  const std::size_t used = bytes_.size() + kAttributeHeaderSize + kFingerprintSize;
  if (used >= kMaxBuiltMessage) return;
  size = std::min(size, kMaxBuiltMessage - used) & ~std::size_t{3};
  reserve(kPadding, size);
}

Bytes StunBuilder::finish(bool fingerprint) {
  if (fingerprint) {
    const std::size_t at = bytes_.size();
    bytes_.resize(at + kFingerprintSize, 0);
    store_be16(bytes_.data() + 2, static_cast<std::uint16_t>(bytes_.size() - kHeaderSize));
    store_be16(bytes_.data() + at, kFingerprint);
    store_be16(bytes_.data() + at + 2, 4);
    store_be32(bytes_.data() + at + 4, stun_crc32(ByteSpan(bytes_).first(at)) ^ kFingerprintXor);
  } else {
    store_be16(bytes_.data() + 2, static_cast<std::uint16_t>(bytes_.size() - kHeaderSize));
  }
  return std::move(bytes_);
}

Bytes build_binding_request(const StunTransactionId& id, const BindingRequestOptions& options) {
  StunBuilder b(kBindingRequest, raw_id_of(id));
  if (options.change_flags) b.add_u32(kChangeRequest, *options.change_flags & (kChangeIp | kChangePort));
  if (!options.software.empty()) b.add_text(kSoftware, options.software);
  return b.finish(options.fingerprint);
}

Bytes build_classic_binding_request(const StunRawId& id, std::optional<std::uint8_t> change_flags) {
  StunBuilder b(kBindingRequest, id);
  if (change_flags) b.add_u32(kChangeRequest, *change_flags & (kChangeIp | kChangePort));
  return b.finish(false);
}

}  // namespace knit::punch
