// In-place header rewrites for a parsed packet, each keeping every checksum right with
// RFC 1624 incremental updates (never a full recomputation on the forwarding path):
//
//   address  -> IPv4 header checksum, and the TCP/UDP checksum (pseudo-header)
//   port     -> TCP/UDP checksum; ICMP query identifier -> ICMP checksum
//   TTL      -> IPv4 header checksum
//   quoted packet inside an ICMP error -> its IP checksum, its transport checksum when quoted,
//                                         and the enclosing ICMP checksum for all of those
//
// The view is updated to match, so a packet can be translated twice (hairpinning).
#pragma once

#include <cstdint>
#include <span>

#include "nat/packet_view.hpp"

namespace knit::nat {

// Source / destination endpoint of a TCP, UDP or ICMP query packet (a first fragment too).
// For ICMP queries the identifier is the port (see TransportFields).
void rewrite_source(std::span<std::uint8_t> packet, PacketView& view, std::uint32_t address,
                    std::uint16_t port);
void rewrite_destination(std::span<std::uint8_t> packet, PacketView& view, std::uint32_t address,
                         std::uint16_t port);

// Only the IPv4 addresses: non-first fragments and the outer header of ICMP errors (ICMPv4
// has no pseudo-header).
void rewrite_source_address(std::span<std::uint8_t> packet, PacketView& view,
                            std::uint32_t address);
void rewrite_destination_address(std::span<std::uint8_t> packet, PacketView& view,
                                 std::uint32_t address);

// The quoted packet of an ICMP error: its source (inbound errors quote what the NAT sent) or
// destination (outbound errors quote what the inside host received).
void rewrite_quoted_source(std::span<std::uint8_t> packet, PacketView& view, std::uint32_t address,
                           std::uint16_t port);
void rewrite_quoted_destination(std::span<std::uint8_t> packet, PacketView& view,
                                std::uint32_t address, std::uint16_t port);

// Forwarding as a router: TTL - 1 (the caller has checked TTL > 1).
void decrement_ttl(std::span<std::uint8_t> packet, PacketView& view);

}  // namespace knit::nat
