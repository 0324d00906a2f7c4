#include "control/route_rules.hpp"

#include <algorithm>

namespace knit::control {

namespace {

const std::vector<std::pair<IpPrefix, std::string_view>>& reserved() {
  static const std::vector<std::pair<IpPrefix, std::string_view>> list = {
      {*IpPrefix::parse("0.0.0.0/8"), "the unspecified range"},
      {*IpPrefix::parse("127.0.0.0/8"), "loopback"},
      {*IpPrefix::parse("169.254.0.0/16"), "link-local"},
      {*IpPrefix::parse("224.0.0.0/4"), "multicast"},
      {*IpPrefix::parse("255.255.255.255/32"), "broadcast"},
      {*IpPrefix::parse("::/128"), "the unspecified address"},
      {*IpPrefix::parse("::1/128"), "loopback"},
      {*IpPrefix::parse("fe80::/10"), "link-local"},
      {*IpPrefix::parse("ff00::/8"), "multicast"},
  };
  return list;
}

bool host_bits_clear(const IpPrefix& prefix) {
  const std::uint8_t* bytes = prefix.address.bytes();
  const unsigned size = prefix.address.is_v4() ? 4 : 16;
  for (unsigned bit = prefix.length; bit < size * 8; ++bit)
    if ((bytes[bit / 8] >> (7 - bit % 8)) & 1) return false;
  return true;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && s.front() == ' ') s.remove_prefix(1);
  while (!s.empty() && s.back() == ' ') s.remove_suffix(1);
  return s;
}

}  // namespace

bool is_default_route(const IpPrefix& prefix) { return prefix.length == 0; }

bool prefix_holds(const IpPrefix& prefix, const IpAddress& address) {
  if (prefix.address.is_v4() != address.is_v4()) return false;
  const std::uint8_t* a = prefix.address.bytes();
  const std::uint8_t* b = address.bytes();
  unsigned bits = prefix.length;
  for (unsigned i = 0; bits > 0; ++i) {
    const unsigned take = std::min(bits, 8u);
    const auto mask = static_cast<std::uint8_t>(0xff << (8 - take));
    if ((a[i] & mask) != (b[i] & mask)) return false;
    bits -= take;
  }
  return true;
}

bool prefixes_overlap(const IpPrefix& a, const IpPrefix& b) {
  if (a.address.is_v4() != b.address.is_v4()) return false;
  return a.length <= b.length ? prefix_holds(a, b.address) : prefix_holds(b, a.address);
}

std::string route_problem(const IpPrefix& route, const std::vector<IpPrefix>& mesh,
                          const std::vector<IpPrefix>& underlay) {
  const std::string text = route.to_string();
  if (!host_bits_clear(route)) return text + " has host bits set: name the network (e.g. 10.0.0.0/24)";
  if (is_default_route(route)) return text + " is a default route: offer it with --advertise-exit-node";
  for (const IpPrefix& m : mesh)
    if (!m.address.is_unspecified() && prefixes_overlap(route, m))
      return text + " overlaps the mesh's own prefix " + m.to_string();
  for (const auto& [r, what] : reserved())
    if (prefixes_overlap(route, r)) return text + " overlaps " + std::string(what) + " (" + r.to_string() + ")";
  for (const IpPrefix& u : underlay)
    if (prefixes_overlap(route, u))
      return text + " holds " + u.to_string() +
             ", this node's underlay to the mesh (that traffic would go into the tunnel)";
  return {};
}

std::optional<RouteList> parse_route_list(std::string_view text, bool allow_exit, std::string& error) {
  RouteList out;
  text = trim(text);
  if (text.empty()) return out;
  while (true) {
    const std::size_t comma = text.find(',');
    const std::string_view item = trim(text.substr(0, comma));
    if (allow_exit && item == "exit") {
      out.exit = true;
    } else {
      const auto prefix = item.find('/') == std::string_view::npos ? std::nullopt : IpPrefix::parse(item);
      if (!prefix) {
        error = "'" + std::string(item) + "' is not a CIDR prefix (e.g. 10.0.0.0/24" +
                (allow_exit ? std::string(") or exit") : std::string(")"));
        return std::nullopt;
      }
      if (!host_bits_clear(*prefix)) {
        error = std::string(item) + " has host bits set: name the network (e.g. 10.0.0.0/24)";
        return std::nullopt;
      }
      if (std::find(out.routes.begin(), out.routes.end(), *prefix) == out.routes.end())
        out.routes.push_back(*prefix);
    }
    if (comma == std::string_view::npos) break;
    text = text.substr(comma + 1);
  }
  return out;
}

std::string format_route_list(const RouteList& list) {
  std::string out;
  for (const IpPrefix& route : list.routes) out += (out.empty() ? "" : ",") + route.to_string();
  if (list.exit) out += out.empty() ? "exit" : ",exit";
  return out;
}

}  // namespace knit::control
