// Every wire size and limit of the control protocol, in one place: the join token, the Noise
// channel's framing, and the bounds the message parser enforces on hostile input.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace knit::control {

// ---- join token (token.hpp) ----
inline constexpr std::string_view kTokenPrefix = "knit1-";
inline constexpr std::uint8_t kTokenVersion = 1;
inline constexpr std::size_t kTokenIdSize = 8;
inline constexpr std::size_t kTokenSecretSize = 32;
inline constexpr std::size_t kTokenChecksumSize = 4;
inline constexpr std::size_t kMaxTokenAddresses = 8;
inline constexpr std::size_t kMaxHostNameLength = 253;  // RFC 1035 §2.3.4, without the root dot
// version, coordinator key, id, secret, address count.
inline constexpr std::size_t kTokenFixedSize = 1 + 32 + kTokenIdSize + kTokenSecretSize + 1;
// The largest address entry: kind, name length, name, port.
inline constexpr std::size_t kTokenMaxAddressSize = 1 + 1 + kMaxHostNameLength + 2;
inline constexpr std::size_t kTokenMaxBinarySize =
    kTokenFixedSize + kMaxTokenAddresses * kTokenMaxAddressSize + kTokenChecksumSize;
// base64url without padding of the largest layout, after the prefix.
inline constexpr std::size_t kMaxTokenLength =
    kTokenPrefix.size() + (kTokenMaxBinarySize * 4 + 2) / 3;

// ---- channel framing (channel.hpp) ----
inline constexpr std::size_t kFrameHeaderSize = 4;  // big-endian ciphertext length
// The largest message: a relay map of kMaxRelays relays (JSON, ~0.6 MiB); peer maps go in pages.
inline constexpr std::size_t kMaxFrameSize = std::size_t{2} << 20;
// What the coordinator needs to accept from an agent (register, endpoints, NAT report): a
// responder passes it as max_frame so an unauthenticated stranger's JSON stays small.
inline constexpr std::size_t kMaxAgentFrameSize = std::size_t{1} << 20;
inline constexpr std::size_t kAeadTagSize = 16;
// The top bit of a frame's length marks a split message (channel.hpp): only on a channel that
// enabled them (the relay's data frames); elsewhere such a length is simply over the limit.
inline constexpr std::uint32_t kSplitFlag = 0x80000000u;

// ---- messages (messages.hpp) ----
inline constexpr int kMessageVersion = 1;
inline constexpr std::size_t kMaxMessageSize = kMaxFrameSize - kAeadTagSize;
inline constexpr std::size_t kMaxJsonDepth = 16;  // refused before nlohmann parses anything
inline constexpr std::size_t kMaxEndpoints = 64;
inline constexpr std::size_t kMaxPeers = 32768;  // in a whole map, over all its pages
// Peer pages and deltas (peer_codec.hpp): the coordinator cuts pages at about the target size
// and splits a larger change into several deltas; the parser refuses more than the maximums.
inline constexpr std::size_t kMaxPeersPerMessage = 4096;
inline constexpr std::size_t kPeerPageTargetBytes = std::size_t{64} << 10;
inline constexpr std::size_t kMaxPeerMessageBytes = std::size_t{1} << 20;
inline constexpr std::size_t kMaxTags = 32;
inline constexpr std::size_t kMaxRoutes = 256;
inline constexpr std::size_t kMaxRelays = 256;
inline constexpr std::size_t kMaxRelayAddresses = 8;
inline constexpr std::size_t kMaxNameLength = 63;  // node, relay and tag names: one DNS label
inline constexpr std::size_t kMaxHostnameLength = 255;
inline constexpr std::size_t kMaxShortTextLength = 64;  // os, version
inline constexpr std::size_t kMaxFeatures = 16;
inline constexpr std::size_t kMaxSplitDomains = 64;
inline constexpr std::size_t kMaxSplitResolvers = 4;
inline constexpr std::size_t kMaxErrorTextLength = 1024;

}  // namespace knit::control
