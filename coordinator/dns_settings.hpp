// The mesh's DNS settings as the coordinator keeps them: the domain every node's name lives
// under, and split-DNS mappings (domain -> resolvers). Stored as two rows of the settings table
// (both stores; no schema change), pushed to agents as control::DnsConfig.
//
//   dns_domain  "knit.internal"
//   dns_split   "corp.example=10.1.0.53:53,10.1.0.54:53;lab.example=[fd00::53]:53"
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "base/ip.hpp"
#include "control/messages.hpp"

namespace knit::coordinator {

using DnsSettings = control::DnsConfig;

// The default domain; `.internal` is reserved for private use (ICANN, 2024).
inline constexpr std::string_view kDefaultDnsDomain = "knit.internal";

inline constexpr std::string_view kDnsDomainKey = "dns_domain";
inline constexpr std::string_view kDnsSplitKey = "dns_split";

std::string encode_split(const std::vector<control::SplitDns>& split);
// nullopt when the stored text is not valid (the settings then keep no split domains).
std::optional<std::vector<control::SplitDns>> parse_split(std::string_view text);
// From the two stored values (absent: defaults).
DnsSettings dns_settings_from(const std::optional<std::string>& domain, const std::optional<std::string>& split);
// Why the settings cannot be stored (an invalid domain, too many split domains, ...); empty if
// they can. Lowercases the domains first.
std::string normalize_dns_settings(DnsSettings& settings);

}  // namespace knit::coordinator
