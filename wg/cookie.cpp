#include "wg/cookie.hpp"

#include <sodium.h>

#include <algorithm>

#include "wg/crypto.hpp"

namespace knit::wg {
namespace {

constexpr std::size_t kReplyReceiverOffset = 4;
constexpr std::size_t kReplyNonceOffset = 8;
constexpr std::size_t kReplyCookieOffset = kReplyNonceOffset + kCookieNonceSize;  // 32
static_assert(kReplyCookieOffset + kCookieSize + kAuthTagSize == kCookieReplySize);

struct MacOffsets {
  std::size_t mac1;
  std::size_t mac2;
};

// Where the macs sit, told by the message's size: only handshake messages carry them.
std::optional<MacOffsets> mac_offsets(std::size_t size) {
  if (size == kInitiationSize) return MacOffsets{kInitiationMac1Offset, kInitiationMac2Offset};
  if (size == kResponseSize) return MacOffsets{kResponseMac1Offset, kResponseMac2Offset};
  return std::nullopt;
}

// HASH(label || public key): the mac1 key and the cookie encryption key (§5.4.4, §5.4.7).
void labelled_key(SymmetricKey& out, std::string_view label, const PublicKey& pub) {
  crypto::hash(out.span(),
               {ByteSpan(reinterpret_cast<const std::uint8_t*>(label.data()), label.size()),
                ByteSpan(pub)});
}

}  // namespace

// ---- CookieChecker ----

void CookieChecker::configure(const PublicKey& local_public) {
  labelled_key(mac1_key_, kLabelMac1, local_public);
  labelled_key(cookie_key_, kLabelCookie, local_public);
}

bool CookieChecker::secret_is_fresh(Instant now) const {
  return secret_birth_ && now - *secret_birth_ < kCookieRefreshTime;
}

void CookieChecker::make_cookie(std::span<std::uint8_t, kCookieSize> out,
                                const Endpoint& source) const {
  // §5.4.7: τ = MAC(R, A), A the source address and port.
  std::array<std::uint8_t, 16 + 2> a{};
  const IpAddress& ip = source.address();
  std::copy_n(ip.bytes(), ip.size(), a.begin());
  store_be16(a.data() + ip.size(), source.port());
  crypto::mac(out, ByteSpan(secret_.span()), ByteSpan(a.data(), ip.size() + 2));
}

MacCheck CookieChecker::check(ByteSpan msg, const Endpoint& source, Instant now,
                              bool check_cookie) const {
  const auto offsets = mac_offsets(msg.size());
  if (!offsets) return MacCheck::invalid_mac;

  std::array<std::uint8_t, kMacSize> computed{};
  crypto::mac(computed, ByteSpan(mac1_key_.span()), msg.first(offsets->mac1));
  if (sodium_memcmp(computed.data(), msg.data() + offsets->mac1, kMacSize) != 0) {
    return MacCheck::invalid_mac;
  }
  if (!check_cookie || !secret_is_fresh(now)) return MacCheck::valid_mac_no_cookie;

  Secret<kCookieSize> cookie;
  make_cookie(cookie.span(), source);
  crypto::mac(computed, ByteSpan(cookie.span()), msg.first(offsets->mac2));
  if (sodium_memcmp(computed.data(), msg.data() + offsets->mac2, kMacSize) != 0) {
    return MacCheck::valid_mac_no_cookie;
  }
  return MacCheck::valid_mac_with_cookie;
}

void CookieChecker::create_reply(std::span<std::uint8_t, kCookieReplySize> out, ByteSpan msg,
                                 std::uint32_t receiver_index, const Endpoint& source,
                                 Instant now, Random& rng) {
  std::fill(out.begin(), out.end(), std::uint8_t{0});
  const auto offsets = mac_offsets(msg.size());
  if (!offsets) return;

  if (!secret_is_fresh(now)) {
    rng.fill(secret_.span());
    secret_birth_ = now;
  }
  Secret<kCookieSize> cookie;
  make_cookie(cookie.span(), source);

  out[0] = static_cast<std::uint8_t>(MessageType::cookie_reply);
  store_le32(out.data() + kReplyReceiverOffset, receiver_index);
  const auto nonce = out.subspan<kReplyNonceOffset, kCookieNonceSize>();
  rng.fill(nonce);
  crypto::xaead_encrypt(out.subspan<kReplyCookieOffset>(), ByteSpan(cookie.span()), nonce,
                        ByteSpan(cookie_key_.span()), msg.subspan(offsets->mac1, kMacSize));
}

// ---- CookieMacs ----

void CookieMacs::configure(const PublicKey& remote_public) {
  labelled_key(mac1_key_, kLabelMac1, remote_public);
  labelled_key(cookie_key_, kLabelCookie, remote_public);
  last_mac1_.fill(0);
  have_sent_mac1_ = false;
  cookie_.wipe();
  cookie_birth_.reset();
}

bool CookieMacs::has_fresh_cookie(Instant now) const {
  return cookie_birth_ && now - *cookie_birth_ < kCookieRefreshTime;
}

void CookieMacs::add_macs(MutableByteSpan msg, Instant now) {
  const auto offsets = mac_offsets(msg.size());
  if (!offsets) return;
  const auto mac1 = msg.subspan(offsets->mac1).first<kMacSize>();
  const auto mac2 = msg.subspan(offsets->mac2).first<kMacSize>();

  crypto::mac(mac1, ByteSpan(mac1_key_.span()), msg.first(offsets->mac1));
  std::copy(mac1.begin(), mac1.end(), last_mac1_.begin());
  have_sent_mac1_ = true;

  if (has_fresh_cookie(now)) {
    crypto::mac(mac2, ByteSpan(cookie_.span()), msg.first(offsets->mac2));
  } else {
    std::fill(mac2.begin(), mac2.end(), std::uint8_t{0});
  }
}

CookieMacs::ReplyResult CookieMacs::consume_reply(
    std::span<const std::uint8_t, kCookieReplySize> reply, Instant now) {
  if (!have_sent_mac1_) return ReplyResult::unexpected;
  Secret<kCookieSize> cookie;
  if (!crypto::xaead_decrypt(cookie.span(), reply.subspan<kReplyCookieOffset>(),
                             reply.subspan<kReplyNonceOffset, kCookieNonceSize>(),
                             ByteSpan(cookie_key_.span()), ByteSpan(last_mac1_))) {
    return ReplyResult::decrypt_failed;
  }
  cookie_ = cookie;
  cookie_birth_ = now;
  // One reply per mac1: a replayed reply is no longer expected.
  have_sent_mac1_ = false;
  return ReplyResult::ok;
}

}  // namespace knit::wg
