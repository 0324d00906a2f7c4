#include "coordinator/dns_settings.hpp"

#include <algorithm>
#include <cctype>
#include <set>

#include "control/constants.hpp"

namespace knit::coordinator {
namespace {

std::vector<std::string_view> split_on(std::string_view text, char sep) {
  std::vector<std::string_view> out;
  std::size_t start = 0;
  while (start <= text.size()) {
    const std::size_t at = text.find(sep, start);
    out.push_back(text.substr(start, at == std::string_view::npos ? std::string_view::npos : at - start));
    if (at == std::string_view::npos) break;
    start = at + 1;
  }
  return out;
}

void lower_in_place(std::string& s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  if (!s.empty() && s.back() == '.') s.pop_back();
}

}  // namespace

std::string encode_split(const std::vector<control::SplitDns>& split) {
  std::string out;
  for (const auto& entry : split) {
    if (!out.empty()) out += ';';
    out += entry.domain + "=";
    for (std::size_t i = 0; i < entry.resolvers.size(); ++i) {
      if (i) out += ',';
      out += entry.resolvers[i].to_string();
    }
  }
  return out;
}

std::optional<std::vector<control::SplitDns>> parse_split(std::string_view text) {
  std::vector<control::SplitDns> out;
  if (text.empty()) return out;
  for (std::string_view item : split_on(text, ';')) {
    const std::size_t eq = item.find('=');
    if (eq == std::string_view::npos) return std::nullopt;
    control::SplitDns entry;
    entry.domain = std::string(item.substr(0, eq));
    for (std::string_view r : split_on(item.substr(eq + 1), ',')) {
      auto endpoint = Endpoint::parse(r);
      if (!endpoint) return std::nullopt;
      entry.resolvers.push_back(*endpoint);
    }
    out.push_back(std::move(entry));
  }
  return out;
}

DnsSettings dns_settings_from(const std::optional<std::string>& domain, const std::optional<std::string>& split) {
  DnsSettings out;
  out.domain = domain && control::is_valid_domain(*domain) ? *domain : std::string(kDefaultDnsDomain);
  if (split) {
    if (auto parsed = parse_split(*split)) out.split = std::move(*parsed);
  }
  return out;
}

std::string normalize_dns_settings(DnsSettings& settings) {
  lower_in_place(settings.domain);
  if (!control::is_valid_domain(settings.domain))
    return "'" + settings.domain + "' is not a DNS domain (lowercase labels of a-z 0-9 -, joined by '.')";
  if (settings.split.size() > control::kMaxSplitDomains)
    return "at most " + std::to_string(control::kMaxSplitDomains) + " split-DNS domains";
  std::set<std::string> seen;
  for (auto& entry : settings.split) {
    lower_in_place(entry.domain);
    if (!control::is_valid_domain(entry.domain)) return "'" + entry.domain + "' is not a DNS domain";
    if (!seen.insert(entry.domain).second) return "split-DNS domain '" + entry.domain + "' listed twice";
    if (entry.resolvers.empty() || entry.resolvers.size() > control::kMaxSplitResolvers)
      return "split-DNS domain '" + entry.domain + "' needs 1 to " + std::to_string(control::kMaxSplitResolvers) +
             " resolvers";
    for (const Endpoint& r : entry.resolvers)
      if (r.port() == 0 || r.address().is_unspecified()) return "resolver " + r.to_string() + " is not IP:PORT";
  }
  return {};
}

}  // namespace knit::coordinator
