// Limits and defaults of the mesh resolver, in one place.
#pragma once

#include <cstddef>
#include <cstdint>

#include "base/time.hpp"

namespace knit::dns {

inline constexpr std::uint16_t kDnsPort = 53;
// A query larger than this is dropped before parsing (RFC 6891 §6.2.5: 4096 is the practical
// EDNS ceiling; a question alone is at most 12 + 255 + 4 + an OPT record).
inline constexpr std::size_t kMaxQuerySize = 1232;
// Responses: the largest UDP answer we hand a client without EDNS (RFC 1035 §4.2.1) and with it.
inline constexpr std::size_t kClassicUdpSize = 512;
inline constexpr std::size_t kMaxUdpSize = 1232;  // DNS flag day 2020: what we advertise
inline constexpr std::size_t kMaxEdnsUdpSize = 4096;  // the most we send a client over UDP
// A response from upstream larger than this is dropped (TCP carries at most 65535).
inline constexpr std::size_t kMaxResponseSize = 65535;

// TTL of mesh answers: short, so a rename is not cached for long by stub resolvers.
inline constexpr std::uint32_t kMeshTtl = 5;

// Forwarding.
inline constexpr Duration kUpstreamTimeout = 2s;
inline constexpr std::size_t kMaxPending = 1024;   // outstanding forwarded queries
inline constexpr std::size_t kCacheEntries = 1024;
inline constexpr std::uint32_t kMaxCacheTtl = 300;   // seconds; longer TTLs are capped
inline constexpr std::uint32_t kNegativeCacheTtl = 30;

// Per-source rate limit: a token bucket per client address.
inline constexpr double kRatePerSecond = 200;
inline constexpr double kRateBurst = 400;
inline constexpr std::size_t kRateSources = 4096;  // tracked clients; idle ones are forgotten

}  // namespace knit::dns
