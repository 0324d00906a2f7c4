// A "host:port" a peer dials: the coordinator's addresses in a join token, a relay's addresses
// in the relay map. The host is a DNS name or an IP literal; an IPv6 literal is written in
// brackets ("[fd00::1]:443") and stored without them.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "base/ip.hpp"

namespace knit::control {

// A DNS name as a dialer accepts it: 1..253 characters of letters, digits, '-', '_' and '.',
// labels 1..63 long, no empty label (so no leading, trailing or doubled dot).
bool is_valid_host_name(std::string_view name);

struct HostPort {
  std::string host;  // a valid host name or the canonical text of an IP address
  std::uint16_t port = 0;

  // "coord.example.com:443", "192.0.2.1:443", "[2001:db8::1]:443"; port 1..65535. An IP host is
  // stored in its canonical form ("2001:DB8::0:1" becomes "2001:db8::1").
  static std::optional<HostPort> parse(std::string_view text);
  // The inverse of parse; brackets around an IPv6 host.
  std::string to_string() const;
  // The host as an address when it is an IP literal.
  std::optional<IpAddress> ip() const;
  // host is a valid name or IP literal and port is nonzero.
  bool valid() const;

  friend bool operator==(const HostPort&, const HostPort&) = default;
};

}  // namespace knit::control
