// Just enough of the IPv4/IPv6 header for the tunnel: the version, the length the header claims,
// and where the addresses sit. Inputs are hostile: every field is checked against the buffer.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>

#include "base/bytes.hpp"

namespace knit::wg {

struct IpHeaderView {
  int version = 0;                        // 4 or 6
  std::size_t total_length = 0;           // as the header claims, never more than the buffer
  const std::uint8_t* source = nullptr;   // 4 or 16 bytes
  const std::uint8_t* destination = nullptr;
};

inline std::optional<IpHeaderView> parse_ip_header(ByteSpan packet) {
  if (packet.empty()) return std::nullopt;
  IpHeaderView view;
  view.version = packet[0] >> 4;
  if (view.version == 4) {
    if (packet.size() < 20 || (packet[0] & 0x0f) < 5) return std::nullopt;
    view.total_length = load_be16(packet.data() + 2);
    if (view.total_length < 20 || view.total_length > packet.size()) return std::nullopt;
    view.source = packet.data() + 12;
    view.destination = packet.data() + 16;
    return view;
  }
  if (view.version == 6) {
    if (packet.size() < 40) return std::nullopt;
    view.total_length = std::size_t{40} + load_be16(packet.data() + 4);
    if (view.total_length > packet.size()) return std::nullopt;
    view.source = packet.data() + 8;
    view.destination = packet.data() + 24;
    return view;
  }
  return std::nullopt;
}

}  // namespace knit::wg
