#include "control/host_port.hpp"

#include <charconv>

#include "control/constants.hpp"

namespace knit::control {
namespace {

bool is_name_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
         c == '_';
}

std::optional<std::uint16_t> parse_port(std::string_view text) {
  if (text.empty() || text.size() > 5) return std::nullopt;
  unsigned value = 0;
  const auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc{} || ptr != text.data() + text.size() || value == 0 || value > 65535) {
    return std::nullopt;
  }
  return static_cast<std::uint16_t>(value);
}

}  // namespace

bool is_valid_host_name(std::string_view name) {
  if (name.empty() || name.size() > kMaxHostNameLength) return false;
  std::size_t label = 0;
  for (char c : name) {
    if (c == '.') {
      if (label == 0) return false;
      label = 0;
    } else if (is_name_char(c)) {
      if (++label > 63) return false;
    } else {
      return false;
    }
  }
  return label != 0;
}

std::optional<HostPort> HostPort::parse(std::string_view text) {
  std::string_view host;
  std::string_view port;
  if (!text.empty() && text.front() == '[') {
    const auto close = text.find(']');
    if (close == std::string_view::npos || close + 1 >= text.size() || text[close + 1] != ':') {
      return std::nullopt;
    }
    host = text.substr(1, close - 1);
    port = text.substr(close + 2);
    const auto ip = IpAddress::parse(host);
    if (!ip || !ip->is_v6()) return std::nullopt;  // brackets hold an IPv6 literal only
  } else {
    const auto colon = text.rfind(':');
    if (colon == std::string_view::npos) return std::nullopt;
    host = text.substr(0, colon);
    port = text.substr(colon + 1);
    if (host.find(':') != std::string_view::npos) return std::nullopt;  // IPv6 needs brackets
  }
  const auto port_number = parse_port(port);
  if (!port_number) return std::nullopt;
  HostPort out;
  out.port = *port_number;
  if (const auto ip = IpAddress::parse(host)) {
    out.host = ip->to_string();
  } else if (is_valid_host_name(host)) {
    out.host = std::string(host);
  } else {
    return std::nullopt;
  }
  return out;
}

std::string HostPort::to_string() const {
  const auto address = ip();
  std::string out = address && address->is_v6() ? "[" + host + "]" : host;
  out += ':';
  out += std::to_string(port);
  return out;
}

std::optional<IpAddress> HostPort::ip() const {
  if (host.size() > 45) return std::nullopt;  // longer than any IP literal
  return IpAddress::parse(host);
}

bool HostPort::valid() const {
  if (port == 0) return false;
  if (const auto address = ip()) return address->to_string() == host;
  return is_valid_host_name(host);
}

}  // namespace knit::control
