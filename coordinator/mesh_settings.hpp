// The mesh's own settings as both stores keep them: rows of the settings table, read back into a
// MeshSettings. One place for the keys, so the SQLite and PostgreSQL stores, their export and
// import (migrate), and the address allocator agree on them.
//
//   ipv4_prefix     "100.64.0.0/10"        fixed while the mesh has nodes
//   ipv6_prefix     "fd12:3456:789a::/48"  a random ULA, fixed when the mesh is first used
//   ipv4_cursor     "0"                    where the allocator looks next (ipam.hpp)
//   ipv4_free_built "1"                    the free-range table matches the nodes (ipam.hpp)
//   listen_address  "coord.example:7443"   what `token create` puts into tokens
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "coordinator/records.hpp"
#include "coordinator/result.hpp"

namespace knit::coordinator {

inline constexpr std::string_view kIpv4PrefixKey = "ipv4_prefix";
inline constexpr std::string_view kIpv6PrefixKey = "ipv6_prefix";
inline constexpr std::string_view kIpv4CursorKey = "ipv4_cursor";
inline constexpr std::string_view kFreeBuiltKey = "ipv4_free_built";
inline constexpr std::string_view kListenKey = "listen_address";

// From the two stored prefixes: nullopt while either is absent (the mesh is not set up yet), an
// error when they are there but unusable (a hand-edited or damaged database).
Result<std::optional<MeshSettings>> mesh_settings_from(const std::optional<std::string>& ipv4,
                                                       const std::optional<std::string>& ipv6);

}  // namespace knit::coordinator
