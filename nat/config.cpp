#include "nat/config.hpp"

namespace knit::nat {

const char* to_string(Mapping mapping) {
  switch (mapping) {
    case Mapping::endpoint_independent: return "endpoint-independent";
    case Mapping::address_dependent: return "address-dependent";
    case Mapping::address_and_port_dependent: return "address-and-port-dependent";
  }
  return "?";
}

const char* to_string(Filtering filtering) {
  switch (filtering) {
    case Filtering::endpoint_independent: return "endpoint-independent";
    case Filtering::address_dependent: return "address-dependent";
    case Filtering::address_and_port_dependent: return "address-and-port-dependent";
  }
  return "?";
}

const char* to_string(ConfigError error) {
  switch (error) {
    case ConfigError::none: return "ok";
    case ConfigError::no_external_address: return "no external address";
    case ConfigError::not_ipv4: return "the NAT engine handles IPv4 addresses only";
    case ConfigError::bad_port_range: return "port range must lie within 1024..65535, min <= max";
    case ConfigError::bad_timeout: return "timeouts must be positive";
    case ConfigError::zero_bound: return "table bounds must be between 1 and 2^31";
    case ConfigError::too_many_addresses: return "at most 65535 external addresses";
  }
  return "?";
}

ConfigError validate(const Config& config) {
  if (config.external_addresses.empty()) return ConfigError::no_external_address;
  if (config.external_addresses.size() > 65535) return ConfigError::too_many_addresses;
  for (const IpAddress& a : config.external_addresses)
    if (!a.is_v4()) return ConfigError::not_ipv4;
  for (const IpPrefix& p : config.inside_prefixes)
    if (!p.address.is_v4()) return ConfigError::not_ipv4;
  if (config.inside_address && !config.inside_address->is_v4()) return ConfigError::not_ipv4;
  for (const PortForward& f : config.port_forwards) {
    if (!f.internal_address.is_v4()) return ConfigError::not_ipv4;
    if (f.external_address && !f.external_address->is_v4()) return ConfigError::not_ipv4;
  }
  if (config.port_min < 1024 || config.port_min > config.port_max)
    return ConfigError::bad_port_range;
  // The defaults meet RFC 4787 REQ-5, RFC 5382 REQ-5 and RFC 5508 REQ-2; shorter timers are
  // allowed on purpose, so a lab can emulate the non-compliant NATs found in the wild.
  if (config.udp_timeout <= Duration::zero() ||
      config.tcp_established_timeout <= Duration::zero() ||
      config.tcp_transitory_timeout <= Duration::zero() ||
      config.icmp_timeout <= Duration::zero() || config.unsolicited_syn_hold < Duration::zero())
    return ConfigError::bad_timeout;
  constexpr std::size_t kMaxBound = std::size_t{1} << 31;
  if (config.max_mappings == 0 || config.max_sessions == 0 || config.max_mappings > kMaxBound ||
      config.max_sessions > kMaxBound)
    return ConfigError::zero_bound;
  return ConfigError::none;
}

}  // namespace knit::nat
