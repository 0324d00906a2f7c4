// Every wire size, limit and timer of the WireGuard protocol, in one place.
// Sources: the WireGuard whitepaper §5.4 (messages) and §6 (timers), ../shared/WIREGUARD.md.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>

namespace knit::wg {

using namespace std::chrono_literals;

// Byte 0 of every message; bytes 1..3 are zero.
enum class MessageType : std::uint8_t { initiation = 1, response = 2, cookie_reply = 3, data = 4 };

//   initiation: 0 type, 4 sender, 8 ephemeral[32], 40 static[48], 88 timestamp[28], 116 mac1, 132 mac2
//   response:   0 type, 4 sender, 8 receiver, 12 ephemeral[32], 44 empty[16], 60 mac1, 76 mac2
//   cookie:     0 type, 4 receiver, 8 nonce[24], 32 cookie[32]
//   data:       0 type, 4 receiver, 8 counter (LE64), 16 AEAD(padded packet)
inline constexpr std::size_t kInitiationSize = 148;
inline constexpr std::size_t kResponseSize = 92;
inline constexpr std::size_t kCookieReplySize = 64;
inline constexpr std::size_t kDataHeaderSize = 16;
inline constexpr std::size_t kAuthTagSize = 16;
inline constexpr std::size_t kKeepaliveSize = kDataHeaderSize + kAuthTagSize;  // 32
inline constexpr std::size_t kMinDataSize = kKeepaliveSize;
inline constexpr std::size_t kTimestampSize = 12;  // TAI64N
inline constexpr std::size_t kMacSize = 16;
inline constexpr std::size_t kCookieSize = 16;
inline constexpr std::size_t kCookieNonceSize = 24;
inline constexpr std::size_t kPaddingMultiple = 16;
inline constexpr std::size_t kMaxDatagramSize = 65535;  // largest UDP payload we accept
inline constexpr std::size_t kInitiationMac1Offset = 116;
inline constexpr std::size_t kInitiationMac2Offset = 132;
inline constexpr std::size_t kResponseMac1Offset = 60;
inline constexpr std::size_t kResponseMac2Offset = 76;

inline constexpr std::uint64_t kRekeyAfterMessages = std::uint64_t{1} << 60;
inline constexpr std::uint64_t kRejectAfterMessages = ~std::uint64_t{0} - (std::uint64_t{1} << 13);

inline constexpr std::chrono::seconds kRekeyAfterTime{120};
inline constexpr std::chrono::seconds kRejectAfterTime{180};
inline constexpr std::chrono::seconds kRekeyAttemptTime{90};
inline constexpr std::chrono::seconds kRekeyTimeout{5};
inline constexpr std::chrono::milliseconds kRekeyTimeoutJitterMax{334};
inline constexpr std::chrono::seconds kKeepaliveTimeout{10};
inline constexpr std::chrono::seconds kCookieRefreshTime{120};
inline constexpr std::chrono::milliseconds kHandshakeInitiationRate{20};
// The initiator rekeys on receive when its keypair is this old (REJECT - KEEPALIVE - REKEY_TIMEOUT).
inline constexpr std::chrono::seconds kRekeyOnReceiveAge =
    kRejectAfterTime - kKeepaliveTimeout - kRekeyTimeout;  // 165 s
// All key material is zeroed after 3 * REJECT_AFTER_TIME without a new session.
inline constexpr std::chrono::seconds kZeroKeysAfter = kRejectAfterTime * 3;  // 540 s
// Retransmissions before giving up: REKEY_ATTEMPT_TIME / REKEY_TIMEOUT.
inline constexpr int kMaxTimerHandshakes = static_cast<int>(kRekeyAttemptTime / kRekeyTimeout);  // 18

// Packets held for a peer while its handshake completes; older ones are dropped first.
inline constexpr std::size_t kMaxStagedPackets = 128;

}  // namespace knit::wg
