// WireGuard's handshake macs and cookies (whitepaper §5.3, §5.4.4, §5.4.7): mac1 proves the
// sender knows our public key; under load, mac2 proves it can receive at its source address.
//
//   mac1 = MAC(HASH(LABEL_MAC1 || receiver's static public), msg[0 .. mac1))
//   mac2 = MAC(cookie, msg[0 .. mac2)), or 16 zeros without a fresh cookie
//   cookie = MAC(R, source), R random and replaced every kCookieRefreshTime
//   source = the IP address bytes (4 or 16) || the UDP port big-endian, as the Linux module
//            does (wireguard-go appends the port little-endian; only the responder that mints
//            a cookie ever recomputes it, so either is interoperable)
//
//   cookie reply (64): 0 type=3 | 1 reserved[3] | 4 receiver LE32 | 8 nonce[24]
//                      | 32 XAEAD(HASH(LABEL_COOKIE || responder's static public),
//                                 nonce, cookie, ad = mac1 of the message answered)[32]
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <span>
#include <string_view>

#include "base/bytes.hpp"
#include "base/ip.hpp"
#include "base/random.hpp"
#include "base/secret.hpp"
#include "base/time.hpp"
#include "wg/constants.hpp"
#include "wg/keys.hpp"

namespace knit::wg {

inline constexpr std::string_view kLabelMac1 = "mac1----";
inline constexpr std::string_view kLabelCookie = "cookie--";

enum class MacCheck {
  invalid_mac,            // mac1 wrong, or not a handshake message's size: drop silently
  valid_mac_no_cookie,    // mac1 right; mac2 absent, wrong or not checked
  valid_mac_with_cookie,  // mac1 and mac2 right
};

// Responder side, one per device.
class CookieChecker {
 public:
  // Precomputes HASH(LABEL_MAC1 || pub) and HASH(LABEL_COOKIE || pub).
  void configure(const PublicKey& local_public);
  // msg: a whole initiation (148) or response (92). With check_cookie false only mac1 is
  // checked. mac2 is checked against the current secret, and only while it is younger than
  // kCookieRefreshTime (an expired secret makes every mac2 wrong until create_reply renews it).
  MacCheck check(ByteSpan msg, const Endpoint& source, Instant now, bool check_cookie) const;
  // Writes a cookie reply answering msg (whose mac1 is the ad). The secret R is drawn from rng
  // when none is set or it is kCookieRefreshTime old. A msg that is not an initiation or
  // response yields an all-zero reply (type 0, which every receiver drops).
  void create_reply(std::span<std::uint8_t, kCookieReplySize> out, ByteSpan msg,
                    std::uint32_t receiver_index, const Endpoint& source, Instant now,
                    Random& rng);

 private:
  bool secret_is_fresh(Instant now) const;
  void make_cookie(std::span<std::uint8_t, kCookieSize> out, const Endpoint& source) const;

  SymmetricKey mac1_key_;
  SymmetricKey cookie_key_;
  Secret<32> secret_;  // R
  std::optional<Instant> secret_birth_;
};

// Initiator side, one per peer.
class CookieMacs {
 public:
  // Precomputes the keys from the peer's public key and forgets any cookie.
  void configure(const PublicKey& remote_public);
  // Fills mac1 (and remembers it for a cookie reply) and mac2: from a cookie received less
  // than kCookieRefreshTime ago, else zeros. msg is a whole initiation or response; any other
  // size is left untouched.
  void add_macs(MutableByteSpan msg, Instant now);

  enum class ReplyResult { ok, unexpected /* no mac1 sent yet */, decrypt_failed };
  // Decrypts a cookie reply to the last mac1 sent. Accepts one reply per mac1 sent.
  ReplyResult consume_reply(std::span<const std::uint8_t, kCookieReplySize> reply, Instant now);
  // True when add_macs at `now` would write a mac2.
  bool has_fresh_cookie(Instant now) const;

 private:
  SymmetricKey mac1_key_;
  SymmetricKey cookie_key_;
  std::array<std::uint8_t, kMacSize> last_mac1_{};
  bool have_sent_mac1_ = false;
  Secret<kCookieSize> cookie_;
  std::optional<Instant> cookie_birth_;
};

}  // namespace knit::wg
