// TUN offloads without I/O: the virtio-net header a TUN opened with IFF_VNET_HDR puts before
// every packet, the splitting of the kernel's super-packets (TSO/USO) into MTU-sized segments,
// and the coalescing of one TCP flow's segments back into a super-packet (GRO) before they
// are written to the TUN. Pure functions and classes on caller-owned buffers, no system calls.
//
// The header (include/uapi/linux/virtio_net.h, struct virtio_net_hdr; little-endian, as a
// legacy TUN on a little-endian host has it; 10 bytes):
//
//   0       1          2        4         6           8            10
//   +-------+----------+--------+---------+-----------+------------+
//   | flags | gso_type | hdr_len| gso_size| csum_start| csum_offset|  then the IP packet
//   +-------+----------+--------+---------+-----------+------------+
//
//   flags      NEEDS_CSUM (1): the checksum at csum_start + csum_offset holds only the
//              pseudo-header sum; the sum from csum_start to the end is still to be added.
//   gso_type   NONE, TCPV4, TCPV6, UDP_L4 (USO); the ECN bit (0x80) may be or-ed in.
//   gso_size   payload bytes per segment (the MSS for TCP).
//
// Splitting (Segmenter): every segment gets the super-packet's headers with its own lengths,
// IPv4 identification (first + i) and header checksum, TCP sequence number, and a full
// transport checksum. TCP flags follow the kernel's TSO: CWR only on the first segment, FIN
// and PSH only on the last. IPv4 options are copied to every segment; IPv6 extension headers
// (hop-by-hop, routing, destination options) are walked and copied; fragments are refused.
//
// Coalescing (TcpCoalescer): a segment joins the super-packet held for its flow only when the
// result splits back into exactly the segments that went in: same addresses, ports, IP
// header fields (TOS/traffic class including ECN bits, TTL, DF, flow label), consecutive IPv4
// identification, same ACK number, window and TCP options, sequence number right after the
// held bytes, flags ACK or ACK|PSH (PSH ends the super-packet; SYN, FIN, RST, URG, ECE and
// CWR are never merged, so congestion signals reach the kernel's TCP unchanged), a valid
// checksum, and a payload no larger than the first segment's (a shorter one ends it).
// Packets with IPv4 options or IPv6 extension headers pass alone.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <vector>

#include "base/bytes.hpp"
#include "base/checksum.hpp"

namespace knit::tun {

inline constexpr std::size_t kVirtioNetHeaderSize = 10;
// The largest packet a TUN reads or writes with offloads on (an IPv4/IPv6 total length).
inline constexpr std::size_t kMaxSuperPacket = 65535;

struct VirtioNetHeader {
  static constexpr std::uint8_t kNeedsCsum = 1;
  static constexpr std::uint8_t kGsoNone = 0;
  static constexpr std::uint8_t kGsoTcpV4 = 1;
  static constexpr std::uint8_t kGsoTcpV6 = 4;
  static constexpr std::uint8_t kGsoUdpL4 = 5;
  static constexpr std::uint8_t kGsoEcn = 0x80;

  std::uint8_t flags = 0;
  std::uint8_t gso_type = kGsoNone;
  std::uint16_t hdr_len = 0;
  std::uint16_t gso_size = 0;
  std::uint16_t csum_start = 0;
  std::uint16_t csum_offset = 0;

  static VirtioNetHeader parse(const std::uint8_t* p);  // kVirtioNetHeaderSize bytes
  void write(std::uint8_t* p) const;
};

// The pseudo-header sum of a TCP or UDP packet (RFC 793 §3.1, RFC 8200 §8.1); address bytes
// are 4 or 16 long.
std::uint64_t pseudo_header_sum(ByteSpan source, ByteSpan destination, std::uint8_t protocol,
                                std::uint32_t length);

// Where the headers of an IP packet carrying TCP or UDP end. Fails (nullopt) on anything else:
// a fragment, an unknown extension header, lengths that do not fit.
struct TransportLayout {
  std::uint8_t version = 0;     // 4 or 6
  std::uint8_t protocol = 0;    // 6 (TCP) or 17 (UDP)
  std::size_t ip_header = 0;    // bytes up to the transport header (IPv6: with extensions)
  std::size_t transport_header = 0;  // TCP: data offset * 4; UDP: 8
  std::size_t headers() const { return ip_header + transport_header; }
};
std::optional<TransportLayout> transport_layout(ByteSpan packet);

enum class OffloadError : std::uint8_t {
  ok,
  malformed,      // lengths or fields that do not fit together
  unsupported,    // a GSO type or protocol this code does not split
  too_small,      // a segment does not fit the output buffer
};

// Completes a NEEDS_CSUM packet in place (no GSO): adds the sum from csum_start to the end to
// the partial checksum already at csum_start + csum_offset.
OffloadError complete_checksum(const VirtioNetHeader& header, MutableByteSpan packet);

// Splits one super-packet, a segment at a time, into buffers the caller owns.
class Segmenter {
 public:
  // packet: the bytes after the virtio header; good until the last next(). A header without
  // GSO yields the packet itself (its checksum completed) as the only segment.
  OffloadError start(const VirtioNetHeader& header, ByteSpan packet);
  // Writes the next segment to out and returns its size; 0 when there are no more (or on
  // too_small, reported by error()).
  std::size_t next(MutableByteSpan out);
  OffloadError error() const { return error_; }
  std::size_t segments_left() const;

 private:
  ByteSpan packet_;
  VirtioNetHeader header_;
  TransportLayout layout_;
  std::size_t offset_ = 0;  // payload bytes already emitted
  std::size_t index_ = 0;
  bool done_ = true;
  OffloadError error_ = OffloadError::ok;
};

// Where coalesced packets go: a virtio header and the packet behind it.
class CoalescedSink {
 public:
  virtual ~CoalescedSink() = default;
  virtual void write_coalesced(const VirtioNetHeader& header, ByteSpan packet) = 0;
};

class TcpCoalescer {
 public:
  static constexpr std::size_t kMaxFlows = 8;

  TcpCoalescer();
  // Takes one packet (a whole IPv4 or IPv6 packet with valid lengths). Packets that can be
  // held are copied and held; anything else is written through out at once, after every held
  // super-packet (so no packet overtakes an earlier one of its flow).
  void add(ByteSpan packet, CoalescedSink& out);
  // Writes every held super-packet, oldest first.
  void flush(CoalescedSink& out);
  bool empty() const { return used_ == 0; }

  struct Stats {
    std::uint64_t packets_in = 0;
    std::uint64_t packets_merged = 0;  // joined a super-packet held before them
    std::uint64_t written = 0;         // packets and super-packets written
  };
  const Stats& stats() const { return stats_; }

 private:
  struct Flow {
    std::vector<std::uint8_t> bytes;  // kMaxSuperPacket, allocated once
    std::size_t size = 0;
    std::size_t ip_header = 0;
    std::size_t headers = 0;
    std::size_t segments = 0;
    std::uint16_t gso_size = 0;
    std::uint16_t last_id = 0;
    std::uint32_t next_seq = 0;
    bool closed = false;
  };
  bool can_join(const Flow& flow, ByteSpan packet, const TransportLayout& layout) const;
  void emit(Flow& flow, CoalescedSink& out);

  std::array<Flow, kMaxFlows> flows_;
  std::size_t used_ = 0;
  Stats stats_;
};

}  // namespace knit::tun
