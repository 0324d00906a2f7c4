// Every bound of the policy document and of the rule sets pushed to agents, in one place.
#pragma once

#include <cstddef>
#include <cstdint>

namespace knit::policy {

inline constexpr std::size_t kMaxDocumentBytes = std::size_t{512} << 10;
inline constexpr std::size_t kMaxJsonDepth = 8;
inline constexpr std::size_t kMaxJsonValues = 200000;
inline constexpr std::size_t kMaxNameLength = 63;  // group, host, tag and node names
inline constexpr std::size_t kMaxGroups = 1024;
inline constexpr std::size_t kMaxHosts = 4096;
inline constexpr std::size_t kMaxRules = 4096;
inline constexpr std::size_t kMaxTests = 1024;
inline constexpr std::size_t kMaxListItems = 4096;  // src, dst, group members, host prefixes
inline constexpr std::size_t kMaxPortRanges = 64;   // in one destination
inline constexpr std::size_t kMaxRuleNameLength = 64;

// Pushed rule sets (wire.hpp): what an agent accepts.
inline constexpr std::size_t kMaxWireRules = 16384;
inline constexpr std::size_t kMaxWirePrefixes = 262144;  // over all rules
inline constexpr std::size_t kMaxWireBytes = std::size_t{1} << 20;

}  // namespace knit::policy
