#include "control/token.hpp"

#include <sodium.h>

#include <algorithm>
#include <cstring>

#include "base/bytes.hpp"
#include "wg/crypto.hpp"

namespace knit::control {
namespace {

constexpr std::string_view kChecksumLabel = "knit join token checksum v1";
constexpr std::string_view kSecretLabel = "knit join token secret v1";
constexpr int kVariant = sodium_base64_VARIANT_URLSAFE_NO_PADDING;

enum AddressKind : std::uint8_t { kIpv4 = 4, kIpv6 = 6, kName = 'd' };

ByteSpan text_bytes(std::string_view text) {
  return ByteSpan(reinterpret_cast<const std::uint8_t*>(text.data()), text.size());
}

// The token's binary form holds the secret: wiped on every way out.
struct WipedBytes {
  Bytes bytes;
  ~WipedBytes() { sodium_memzero(bytes.data(), bytes.size()); }
};

std::array<std::uint8_t, kTokenChecksumSize> checksum_of(ByteSpan body) {
  std::array<std::uint8_t, 32> digest{};
  wg::crypto::hash(digest, {text_bytes(kChecksumLabel), body});
  std::array<std::uint8_t, kTokenChecksumSize> out{};
  std::copy_n(digest.begin(), out.size(), out.begin());
  return out;
}

std::string base64url(ByteSpan bytes) {
  std::string out(sodium_base64_ENCODED_LEN(bytes.size(), kVariant), '\0');
  sodium_bin2base64(out.data(), out.size(), bytes.data(), bytes.size(), kVariant);
  out.resize(out.size() - 1);  // the terminating NUL
  return out;
}

void append_port(Bytes& out, std::uint16_t port) {
  out.push_back(static_cast<std::uint8_t>(port >> 8));
  out.push_back(static_cast<std::uint8_t>(port));
}

bool append_address(Bytes& out, const HostPort& address) {
  if (!address.valid()) return false;
  if (const auto ip = address.ip()) {
    out.push_back(ip->is_v4() ? kIpv4 : kIpv6);
    out.insert(out.end(), ip->bytes(), ip->bytes() + ip->size());
  } else {
    out.push_back(kName);
    out.push_back(static_cast<std::uint8_t>(address.host.size()));
    const ByteSpan name = text_bytes(address.host);
    out.insert(out.end(), name.begin(), name.end());
  }
  append_port(out, address.port);
  return true;
}

bool is_space(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; }

std::string_view trim(std::string_view text) {
  while (!text.empty() && is_space(text.front())) text.remove_prefix(1);
  while (!text.empty() && is_space(text.back())) text.remove_suffix(1);
  return text;
}

// "knit" followed by digits and '-', other than our own prefix: a token of another version.
bool has_other_version_prefix(std::string_view text) {
  if (!text.starts_with("knit")) return false;
  std::size_t i = 4;
  while (i < text.size() && text[i] >= '0' && text[i] <= '9') ++i;
  return i > 4 && i < text.size() && text[i] == '-';
}

// Reads the layout after the checksum and version have been verified.
class LayoutReader {
 public:
  explicit LayoutReader(ByteSpan body) : body_(body) {}
  std::size_t remaining() const { return body_.size() - at_; }
  bool take(std::size_t n, ByteSpan& out) {
    if (remaining() < n) return false;
    out = body_.subspan(at_, n);
    at_ += n;
    return true;
  }

 private:
  ByteSpan body_;
  std::size_t at_ = 0;
};

TokenError read_address(LayoutReader& in, HostPort& out) {
  ByteSpan kind;
  if (!in.take(1, kind)) return TokenError::truncated;
  ByteSpan host;
  switch (kind[0]) {
    case kIpv4:
      if (!in.take(4, host)) return TokenError::truncated;
      out.host = IpAddress::v4(host.data()).to_string();
      break;
    case kIpv6:
      if (!in.take(16, host)) return TokenError::truncated;
      out.host = IpAddress::v6(host.data()).to_string();
      break;
    case kName: {
      ByteSpan length;
      if (!in.take(1, length)) return TokenError::truncated;
      if (!in.take(length[0], host)) return TokenError::truncated;
      out.host.assign(reinterpret_cast<const char*>(host.data()), host.size());
      // An IP written as a name would give the token two spellings.
      if (!is_valid_host_name(out.host) || out.ip()) return TokenError::bad_encoding;
      break;
    }
    default:
      return TokenError::bad_encoding;
  }
  ByteSpan port;
  if (!in.take(2, port)) return TokenError::truncated;
  out.port = load_be16(port.data());
  if (out.port == 0) return TokenError::bad_encoding;
  return TokenError::ok;
}

TokenError read_layout(ByteSpan body, JoinToken& out) {
  LayoutReader in(body);
  ByteSpan field;
  if (!in.take(1, field)) return TokenError::truncated;
  if (field[0] != kTokenVersion) return TokenError::bad_version;
  if (!in.take(out.coordinator_key.size(), field)) return TokenError::truncated;
  std::copy(field.begin(), field.end(), out.coordinator_key.begin());
  if (!in.take(out.id.size(), field)) return TokenError::truncated;
  std::copy(field.begin(), field.end(), out.id.begin());
  if (!in.take(kTokenSecretSize, field)) return TokenError::truncated;
  out.secret.assign(field.first<kTokenSecretSize>());
  if (!in.take(1, field)) return TokenError::truncated;
  const std::size_t count = field[0];
  if (count == 0) return TokenError::no_address;
  if (count > kMaxTokenAddresses) return TokenError::too_long;
  out.addresses.clear();
  out.addresses.reserve(count);
  for (std::size_t i = 0; i < count; ++i) {
    HostPort address;
    if (const TokenError err = read_address(in, address); err != TokenError::ok) return err;
    out.addresses.push_back(std::move(address));
  }
  if (in.remaining() != 0) return TokenError::too_long;
  return TokenError::ok;
}

}  // namespace

std::string describe(TokenError error) {
  switch (error) {
    case TokenError::ok:
      return "the join token is valid";
    case TokenError::bad_prefix:
      return "this is not a Knit join token (a join token starts with \"knit1-\")";
    case TokenError::bad_encoding:
      return "the token contains characters that do not belong in a join token: copy it again";
    case TokenError::bad_checksum:
      return "the token is damaged (checksum mismatch): copy it again";
    case TokenError::bad_version:
      return "this join token was made by a newer version of Knit: upgrade knit and try again";
    case TokenError::truncated:
      return "the token is incomplete: copy the whole token";
    case TokenError::too_long:
      return "the text is longer than any Knit join token: copy only the token";
    case TokenError::no_address:
      return "the token names no coordinator address: create a new one with "
             "`knit-coordinator token create`";
  }
  return "the join token is invalid";
}

std::string encode_token(const JoinToken& token) {
  if (token.addresses.empty() || token.addresses.size() > kMaxTokenAddresses) return {};
  WipedBytes body;
  body.bytes.reserve(kTokenMaxBinarySize);
  body.bytes.push_back(kTokenVersion);
  body.bytes.insert(body.bytes.end(), token.coordinator_key.begin(), token.coordinator_key.end());
  body.bytes.insert(body.bytes.end(), token.id.begin(), token.id.end());
  body.bytes.insert(body.bytes.end(), token.secret.data(),
                    token.secret.data() + token.secret.size());
  body.bytes.push_back(static_cast<std::uint8_t>(token.addresses.size()));
  for (const HostPort& address : token.addresses) {
    if (!append_address(body.bytes, address)) return {};
  }
  const auto checksum = checksum_of(body.bytes);
  body.bytes.insert(body.bytes.end(), checksum.begin(), checksum.end());
  return std::string(kTokenPrefix) + base64url(body.bytes);
}

TokenError decode_token(std::string_view text, JoinToken& out) {
  out.secret.wipe();
  text = trim(text);
  if (!text.starts_with(kTokenPrefix)) {
    return has_other_version_prefix(text) ? TokenError::bad_version : TokenError::bad_prefix;
  }
  if (text.size() > kMaxTokenLength) return TokenError::too_long;
  const std::string_view encoded = text.substr(kTokenPrefix.size());

  WipedBytes body;
  body.bytes.resize(encoded.size() / 4 * 3 + 3);
  std::size_t length = 0;
  const char* end = nullptr;
  if (sodium_base642bin(body.bytes.data(), body.bytes.size(), encoded.data(), encoded.size(),
                        nullptr, &length, &end, kVariant) != 0 ||
      end != encoded.data() + encoded.size()) {
    return TokenError::bad_encoding;
  }
  body.bytes.resize(length);
  // Unused low bits in the last character would give one token several spellings.
  {
    std::string canonical = base64url(body.bytes);
    const bool same = canonical == encoded;
    sodium_memzero(canonical.data(), canonical.size());
    if (!same) return TokenError::bad_encoding;
  }
  if (body.bytes.size() <= kTokenChecksumSize) return TokenError::truncated;

  const ByteSpan all(body.bytes);
  const ByteSpan layout = all.first(all.size() - kTokenChecksumSize);
  const auto expected = checksum_of(layout);
  if (sodium_memcmp(expected.data(), all.last(kTokenChecksumSize).data(), expected.size()) != 0) {
    return TokenError::bad_checksum;
  }
  const TokenError err = read_layout(layout, out);
  if (err != TokenError::ok) out.secret.wipe();
  return err;
}

std::string token_id_hex(const TokenId& id) { return to_hex(id); }

SecretHash secret_hash(const TokenSecret& secret) {
  SecretHash out{};
  wg::crypto::hash(out, {text_bytes(kSecretLabel), ByteSpan(secret.span())});
  return out;
}

bool secret_matches(const TokenSecret& secret, const SecretHash& stored) {
  const SecretHash presented = secret_hash(secret);
  return sodium_memcmp(presented.data(), stored.data(), presented.size()) == 0;
}

}  // namespace knit::control
