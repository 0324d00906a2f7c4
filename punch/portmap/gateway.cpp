#include "punch/portmap/gateway.hpp"

#include <bit>
#include <charconv>
#include <fstream>
#include <sstream>
#include <vector>

namespace knit::punch {

namespace {

constexpr unsigned kRtfUp = 0x1;
constexpr unsigned kRtfGateway = 0x2;

std::vector<std::string_view> split_fields(std::string_view line) {
  std::vector<std::string_view> fields;
  std::size_t i = 0;
  while (i < line.size() && fields.size() < 16) {
    while (i < line.size() && (line[i] == ' ' || line[i] == '\t')) ++i;
    const std::size_t start = i;
    while (i < line.size() && line[i] != ' ' && line[i] != '\t') ++i;
    if (i > start) fields.push_back(line.substr(start, i - start));
  }
  return fields;
}

template <typename T>
bool parse_number(std::string_view text, int base, T& out) {
  if (text.empty()) return false;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), out, base);
  return ec == std::errc() && end == text.data() + text.size();
}

// The kernel prints the address as the in-memory 32-bit value (network byte order bytes read
// as a host integer): on little-endian hosts the bytes appear reversed.
IpAddress address_from_proc(std::uint32_t value) {
  std::uint8_t bytes[4];
  for (int i = 0; i < 4; ++i) bytes[i] = static_cast<std::uint8_t>(value >> (8 * i));
  if constexpr (std::endian::native == std::endian::big) {
    for (int i = 0; i < 4; ++i) bytes[i] = static_cast<std::uint8_t>(value >> (24 - 8 * i));
  }
  return IpAddress::v4(bytes);
}

}  // namespace

std::optional<DefaultGateway> parse_proc_net_route(std::string_view text) {
  std::optional<DefaultGateway> best;
  bool header = true;
  while (!text.empty()) {
    const std::size_t nl = text.find('\n');
    const std::string_view line = text.substr(0, nl);
    text = nl == std::string_view::npos ? std::string_view() : text.substr(nl + 1);
    if (header) {  // the column titles
      header = false;
      if (line.starts_with("Iface")) continue;
    }
    const auto f = split_fields(line);
    if (f.size() < 8) continue;
    std::uint32_t destination = 0, gateway = 0, mask = 0;
    unsigned flags = 0, metric = 0;
    if (!parse_number(f[1], 16, destination) || !parse_number(f[2], 16, gateway) ||
        !parse_number(f[3], 16, flags) || !parse_number(f[6], 10, metric) ||
        !parse_number(f[7], 16, mask))
      continue;
    if (destination != 0 || mask != 0 || gateway == 0) continue;
    if ((flags & (kRtfUp | kRtfGateway)) != (kRtfUp | kRtfGateway)) continue;
    if (best && best->metric <= metric) continue;
    best = DefaultGateway{std::string(f[0]), address_from_proc(gateway), metric};
  }
  return best;
}

std::optional<DefaultGateway> read_default_gateway(const std::string& path) {
  std::ifstream in(path);
  if (!in) return std::nullopt;
  std::ostringstream text;
  text << in.rdbuf();
  return parse_proc_net_route(text.str());
}

}  // namespace knit::punch
