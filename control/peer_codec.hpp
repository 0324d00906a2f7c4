// The binary form of the two messages that carry peers: a page of the full peer map and a peer
// delta. Everything else on the control channel stays JSON (messages.hpp); parse_message()
// tells the two apart by the first byte (kBinaryTag is never the first byte of JSON text).
//
// Why binary: at 10,000 nodes the coordinator sends every joiner a map of everybody and every
// agent a delta per join, O(N^2) peer entries in all. A JSON entry is ~310 bytes and parsing it
// costs more CPU than everything else an agent does with it; this form is ~110 bytes (the two
// keys are 64 of them and do not compress) and parses without allocating per field. Numbers in
// README.md ("Coordinator at scale"), from bench/peer_codec_bench.
//
// Integers are unsigned LEB128 ("varint": 7 bits a byte, low first, at most 10 bytes, no
// padding bytes), fixed fields are big-endian.
//
//   page  := 0xB1 0x01 version:varint index:varint count:varint v6base[12] n:varint peer{n}
//   policy := 0xB1 0x03 flags:u8 (bit 0: a policy is in force; others 0) rules[rest]
//   delta := 0xB1 0x02 version:varint v6base[12] n:varint peer{n}  (added)
//                                                n:varint peer{n}  (changed)
//                                                n:varint key[32]{n}  (removed)
//   peer  := flags:u8 name:str node_key[32] disco_key[32] ipv4[4] [ipv6[16]] last_seen:varint
//            home_relay:str n:u8 endpoint{n} n:u8 str{n} (tags) n:varint route{n}
//   flags := bit 0 online | bit 1 ipv6 omitted: it is v6base followed by ipv4 (the mesh's
//            addressing, coordinator/ipam.hpp); other bits must be 0
//   str   := len:u8 bytes[len]
//   endpoint := family:u8 (4|6) address[4|16] port:be16
//   route    := family:u8 (4|6) length:u8 address[4|16]
//
// A map at version V is sent as `count` pages with index 0..count-1, in order; the receiver
// holds it once the last page is in (client_session.hpp). Every page and every delta is at most
// kMaxPeersPerMessage peers and kMaxPeerMessageBytes bytes: the coordinator cuts pages and
// splits deltas to fit, and the parser refuses more. The values follow the same rules as the
// JSON messages (names, tags, non-zero keys, endpoints with a port, prefixes without host bits).
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "control/messages.hpp"

namespace knit::control {

inline constexpr std::uint8_t kBinaryTag = 0xB1;
inline constexpr std::uint8_t kKindMapPage = 0x01;
inline constexpr std::uint8_t kKindDelta = 0x02;
inline constexpr std::uint8_t kKindPolicy = 0x03;

// The first 12 bytes of the peers' IPv6 addresses, when they are the mesh's.
using V6Base = std::array<std::uint8_t, 12>;

// The base most of these peers' addresses share (the first peer's); zeros for none.
V6Base v6_base_of(const std::vector<PeerInfo>& peers);

// One peer entry, appended to out. The coordinator keeps these per peer and splices them.
void append_peer(std::string& out, const PeerInfo& peer, const V6Base& base);

// The parts of a message before its peer entries.
std::string page_header(std::uint64_t version, std::uint64_t index, std::uint64_t count,
                        const V6Base& base, std::size_t peers);
std::string delta_header(std::uint64_t version, const V6Base& base);
// Appends a list count (delta lists) or a removed key.
void append_count(std::string& out, std::size_t n);
void append_key(std::string& out, const NodeKey& key);

// A whole map as pages of at most max_peers peers and about max_bytes bytes each (one page at
// least, even for an empty map).
std::vector<std::string> encode_pages(const PeerMap& map,
                                      std::size_t max_peers = kMaxPeersPerMessage,
                                      std::size_t max_bytes = kPeerPageTargetBytes);

// text[0] == kBinaryTag: the page or delta, or what is wrong with it.
ParseResult parse_binary(std::string_view text);

}  // namespace knit::control
