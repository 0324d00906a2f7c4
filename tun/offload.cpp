#include "tun/offload.hpp"

#include <algorithm>
#include <cstring>
#include <utility>

namespace knit::tun {
namespace {

constexpr std::uint8_t kTcp = 6;
constexpr std::uint8_t kUdp = 17;
constexpr std::uint8_t kFin = 0x01;
constexpr std::uint8_t kPsh = 0x08;
constexpr std::uint8_t kAck = 0x10;
constexpr std::uint8_t kCwr = 0x80;
constexpr std::size_t kMaxExtensionHeaders = 8;

std::uint16_t load_le16(const std::uint8_t* p) { return static_cast<std::uint16_t>(p[0] | (p[1] << 8)); }
void store_le16(std::uint8_t* p, std::uint16_t v) {
  p[0] = static_cast<std::uint8_t>(v);
  p[1] = static_cast<std::uint8_t>(v >> 8);
}

ByteSpan source_of(const std::uint8_t* ip) {
  return (ip[0] >> 4) == 4 ? ByteSpan(ip + 12, 4) : ByteSpan(ip + 8, 16);
}
ByteSpan destination_of(const std::uint8_t* ip) {
  return (ip[0] >> 4) == 4 ? ByteSpan(ip + 16, 4) : ByteSpan(ip + 24, 16);
}

void set_ipv4_checksum(std::uint8_t* ip, std::size_t header) {
  ip[10] = ip[11] = 0;
  store_be16(ip + 10, static_cast<std::uint16_t>(~checksum_fold(checksum_accumulate({ip, header}))));
}

// The TCP or UDP checksum of packet[ip_header, size), written into its field.
void set_transport_checksum(std::uint8_t* packet, std::size_t size, std::size_t ip_header,
                            std::uint8_t protocol) {
  std::uint8_t* field = packet + ip_header + (protocol == kTcp ? 16 : 6);
  field[0] = field[1] = 0;
  const auto length = static_cast<std::uint32_t>(size - ip_header);
  std::uint64_t sum = pseudo_header_sum(source_of(packet), destination_of(packet), protocol, length);
  sum = checksum_accumulate({packet + ip_header, size - ip_header}, sum);
  std::uint16_t value = static_cast<std::uint16_t>(~checksum_fold(sum));
  if (protocol == kUdp && value == 0) value = 0xffff;  // RFC 768: zero means "no checksum"
  store_be16(field, value);
}

}  // namespace

VirtioNetHeader VirtioNetHeader::parse(const std::uint8_t* p) {
  VirtioNetHeader h;
  h.flags = p[0];
  h.gso_type = p[1];
  h.hdr_len = load_le16(p + 2);
  h.gso_size = load_le16(p + 4);
  h.csum_start = load_le16(p + 6);
  h.csum_offset = load_le16(p + 8);
  return h;
}

void VirtioNetHeader::write(std::uint8_t* p) const {
  p[0] = flags;
  p[1] = gso_type;
  store_le16(p + 2, hdr_len);
  store_le16(p + 4, gso_size);
  store_le16(p + 6, csum_start);
  store_le16(p + 8, csum_offset);
}

// ---------------------------------------------------------------- checksums

std::uint64_t pseudo_header_sum(ByteSpan source, ByteSpan destination, std::uint8_t protocol,
                                std::uint32_t length) {
  std::uint64_t sum = checksum_accumulate(source);
  sum = checksum_accumulate(destination, sum);
  return sum + protocol + (length >> 16) + (length & 0xffff);
}

// ---------------------------------------------------------------- layout

std::optional<TransportLayout> transport_layout(ByteSpan packet) {
  const std::uint8_t* p = packet.data();
  const std::size_t size = packet.size();
  if (size < 1) return std::nullopt;
  TransportLayout layout;
  layout.version = static_cast<std::uint8_t>(p[0] >> 4);
  if (layout.version == 4) {
    if (size < 20) return std::nullopt;
    layout.ip_header = std::size_t{p[0] & 0x0fu} * 4;
    if (layout.ip_header < 20 || layout.ip_header > size) return std::nullopt;
    if ((load_be16(p + 6) & 0x3fff) != 0) return std::nullopt;  // a fragment (MF or offset)
    layout.protocol = p[9];
  } else if (layout.version == 6) {
    if (size < 40) return std::nullopt;
    std::uint8_t next = p[6];
    std::size_t offset = 40;
    for (std::size_t i = 0; next != kTcp && next != kUdp; ++i) {
      // Hop-by-hop, routing and destination options share one layout; anything else (a
      // fragment header, ESP, no next header) is not split or merged here.
      if (i == kMaxExtensionHeaders || (next != 0 && next != 43 && next != 60)) return std::nullopt;
      if (offset + 2 > size) return std::nullopt;
      next = p[offset];
      offset += (std::size_t{p[offset + 1]} + 1) * 8;
      if (offset > size) return std::nullopt;
    }
    layout.protocol = next;
    layout.ip_header = offset;
  } else {
    return std::nullopt;
  }
  if (layout.protocol == kTcp) {
    if (layout.ip_header + 20 > size) return std::nullopt;
    layout.transport_header = (std::size_t{p[layout.ip_header + 12]} >> 4) * 4;
    if (layout.transport_header < 20) return std::nullopt;
  } else if (layout.protocol == kUdp) {
    layout.transport_header = 8;
  } else {
    return std::nullopt;
  }
  if (layout.headers() > size) return std::nullopt;
  return layout;
}

OffloadError complete_checksum(const VirtioNetHeader& header, MutableByteSpan packet) {
  if ((header.flags & VirtioNetHeader::kNeedsCsum) == 0) return OffloadError::ok;
  const std::size_t start = header.csum_start;
  const std::size_t field = start + header.csum_offset;
  if (start >= packet.size() || field + 2 > packet.size()) return OffloadError::malformed;
  // The field holds the pseudo-header sum: summing from csum_start includes it.
  std::uint16_t value =
      static_cast<std::uint16_t>(~checksum_fold(checksum_accumulate(packet.subspan(start))));
  if (value == 0) value = 0xffff;  // the same in one's complement, and UDP's rule
  store_be16(packet.data() + field, value);
  return OffloadError::ok;
}

// ---------------------------------------------------------------- splitting

OffloadError Segmenter::start(const VirtioNetHeader& header, ByteSpan packet) {
  packet_ = packet;
  header_ = header;
  offset_ = 0;
  index_ = 0;
  done_ = true;
  error_ = OffloadError::ok;
  const std::uint8_t type = header.gso_type & static_cast<std::uint8_t>(~VirtioNetHeader::kGsoEcn);
  if (type == VirtioNetHeader::kGsoNone) {
    if ((header.flags & VirtioNetHeader::kNeedsCsum) != 0 &&
        (header.csum_start >= packet.size() ||
         std::size_t{header.csum_start} + header.csum_offset + 2 > packet.size()))
      return error_ = OffloadError::malformed;
    done_ = packet.empty();
    return error_;
  }
  const auto layout = transport_layout(packet);
  if (!layout) return error_ = OffloadError::malformed;
  const bool fits = (type == VirtioNetHeader::kGsoTcpV4 && layout->version == 4 && layout->protocol == kTcp) ||
                    (type == VirtioNetHeader::kGsoTcpV6 && layout->version == 6 && layout->protocol == kTcp) ||
                    (type == VirtioNetHeader::kGsoUdpL4 && layout->protocol == kUdp);
  if (!fits) return error_ = OffloadError::unsupported;
  if (header.gso_size == 0) return error_ = OffloadError::malformed;
  layout_ = *layout;
  done_ = false;
  return error_;
}

std::size_t Segmenter::segments_left() const {
  if (done_) return 0;
  if ((header_.gso_type & ~VirtioNetHeader::kGsoEcn) == VirtioNetHeader::kGsoNone) return 1;
  const std::size_t payload = packet_.size() - layout_.headers();
  if (payload <= offset_) return offset_ == 0 ? 1 : 0;
  return (payload - offset_ + header_.gso_size - 1) / header_.gso_size;
}

std::size_t Segmenter::next(MutableByteSpan out) {
  if (done_) return 0;
  if ((header_.gso_type & ~VirtioNetHeader::kGsoEcn) == VirtioNetHeader::kGsoNone) {
    done_ = true;
    if (out.size() < packet_.size()) {
      error_ = OffloadError::too_small;
      return 0;
    }
    std::memcpy(out.data(), packet_.data(), packet_.size());
    error_ = complete_checksum(header_, out.first(packet_.size()));
    return error_ == OffloadError::ok ? packet_.size() : 0;
  }

  const std::size_t headers = layout_.headers();
  const std::size_t payload = packet_.size() - headers;
  const std::size_t chunk = std::min<std::size_t>(header_.gso_size, payload - offset_);
  const std::size_t size = headers + chunk;
  if (out.size() < size) {
    done_ = true;
    error_ = OffloadError::too_small;
    return 0;
  }
  const bool first = index_ == 0;
  const bool last = offset_ + chunk == payload;
  std::uint8_t* o = out.data();
  std::memcpy(o, packet_.data(), headers);
  std::memcpy(o + headers, packet_.data() + headers + offset_, chunk);

  if (layout_.version == 4) {
    store_be16(o + 2, static_cast<std::uint16_t>(size));
    store_be16(o + 4, static_cast<std::uint16_t>(load_be16(o + 4) + index_));
    set_ipv4_checksum(o, layout_.ip_header);
  } else {
    store_be16(o + 4, static_cast<std::uint16_t>(size - 40));
  }
  std::uint8_t* t = o + layout_.ip_header;
  if (layout_.protocol == kTcp) {
    store_be32(t + 4, static_cast<std::uint32_t>(load_be32(t + 4) + offset_));
    // As the kernel's TSO: congestion window reduced is said once, FIN and PSH at the end.
    if (!last) t[13] = static_cast<std::uint8_t>(t[13] & ~(kFin | kPsh));
    if (!first) t[13] = static_cast<std::uint8_t>(t[13] & ~kCwr);
  } else {
    store_be16(t + 4, static_cast<std::uint16_t>(size - layout_.ip_header));
  }
  set_transport_checksum(o, size, layout_.ip_header, layout_.protocol);

  offset_ += chunk;
  ++index_;
  if (last) done_ = true;
  return size;
}

// ---------------------------------------------------------------- coalescing

TcpCoalescer::TcpCoalescer() {
  for (Flow& flow : flows_) flow.bytes.resize(kMaxSuperPacket);
}

namespace {

// A TCP segment that may be held: no IPv4 options, no IPv6 extension headers, not a
// fragment, flags ACK or ACK|PSH, some payload, lengths that agree, a valid checksum.
std::optional<TransportLayout> holdable(ByteSpan packet) {
  const auto layout = transport_layout(packet);
  if (!layout || layout->protocol != kTcp) return std::nullopt;
  const std::uint8_t* p = packet.data();
  if (layout->version == 4) {
    if (layout->ip_header != 20 || load_be16(p + 2) != packet.size()) return std::nullopt;
  } else {
    if (layout->ip_header != 40 || std::size_t{load_be16(p + 4)} + 40 != packet.size()) return std::nullopt;
  }
  if ((p[layout->ip_header + 13] & ~kPsh) != kAck) return std::nullopt;
  if (packet.size() == layout->headers()) return std::nullopt;
  std::uint64_t sum = pseudo_header_sum(source_of(p), destination_of(p), kTcp,
                                        static_cast<std::uint32_t>(packet.size() - layout->ip_header));
  sum = checksum_accumulate(packet.subspan(layout->ip_header), sum);
  if (checksum_fold(sum) != 0xffff) return std::nullopt;
  return layout;
}

bool same_bytes(const std::uint8_t* a, const std::uint8_t* b, std::size_t from, std::size_t to) {
  return std::memcmp(a + from, b + from, to - from) == 0;
}

bool same_flow(const std::uint8_t* held, const std::uint8_t* p, const TransportLayout& layout) {
  if ((held[0] >> 4) != layout.version) return false;
  const std::size_t t = layout.ip_header;
  if (layout.version == 4) return same_bytes(held, p, 12, 20) && same_bytes(held, p, t, t + 4);
  return same_bytes(held, p, 8, 40) && same_bytes(held, p, t, t + 4);
}

}  // namespace

bool TcpCoalescer::can_join(const Flow& flow, ByteSpan packet, const TransportLayout& layout) const {
  if (flow.closed || layout.ip_header != flow.ip_header || layout.headers() != flow.headers) return false;
  const std::uint8_t* held = flow.bytes.data();
  const std::uint8_t* p = packet.data();
  const std::size_t payload = packet.size() - layout.headers();
  if (payload > flow.gso_size || flow.size + payload > kMaxSuperPacket) return false;
  if (layout.version == 4) {
    // version/IHL and TOS (ECN included), flags/fragment offset, TTL, protocol
    if (!same_bytes(held, p, 0, 2) || !same_bytes(held, p, 6, 10)) return false;
    if (load_be16(p + 4) != static_cast<std::uint16_t>(flow.last_id + 1)) return false;
  } else {
    // version, traffic class (ECN included), flow label; next header, hop limit
    if (!same_bytes(held, p, 0, 4) || !same_bytes(held, p, 6, 8)) return false;
  }
  const std::size_t t = layout.ip_header;
  if (load_be32(p + t + 4) != flow.next_seq) return false;
  // ACK number, data offset, window, urgent pointer, options
  return same_bytes(held, p, t + 8, t + 13) && same_bytes(held, p, t + 14, t + 16) &&
         same_bytes(held, p, t + 18, layout.headers());
}

void TcpCoalescer::add(ByteSpan packet, CoalescedSink& out) {
  ++stats_.packets_in;
  const auto layout = holdable(packet);
  if (!layout) {
    flush(out);
    out.write_coalesced(VirtioNetHeader{}, packet);
    ++stats_.written;
    return;
  }
  const std::uint8_t* p = packet.data();
  const std::size_t t = layout->ip_header;
  const std::size_t payload = packet.size() - layout->headers();
  const bool push = (p[t + 13] & kPsh) != 0;

  for (std::size_t i = 0; i < used_; ++i) {
    Flow& flow = flows_[i];
    if (!same_flow(flow.bytes.data(), p, *layout)) continue;
    if (can_join(flow, packet, *layout)) {
      std::memcpy(flow.bytes.data() + flow.size, p + layout->headers(), payload);
      flow.size += payload;
      ++flow.segments;
      flow.next_seq += static_cast<std::uint32_t>(payload);
      if (layout->version == 4) flow.last_id = load_be16(p + 4);
      if (push) flow.bytes[t + 13] |= kPsh;
      if (push || payload < flow.gso_size || flow.size + flow.gso_size > kMaxSuperPacket)
        flow.closed = true;
      ++stats_.packets_merged;
      return;
    }
    // The flow continues in a way that cannot be merged: what is held goes first.
    emit(flow, out);
    std::rotate(flows_.begin() + static_cast<std::ptrdiff_t>(i),
                flows_.begin() + static_cast<std::ptrdiff_t>(i) + 1,
                flows_.begin() + static_cast<std::ptrdiff_t>(used_));
    --used_;
    break;
  }
  if (used_ == kMaxFlows) flush(out);
  Flow& flow = flows_[used_++];
  std::memcpy(flow.bytes.data(), p, packet.size());
  flow.size = packet.size();
  flow.ip_header = t;
  flow.headers = layout->headers();
  flow.segments = 1;
  flow.gso_size = static_cast<std::uint16_t>(payload);
  flow.last_id = layout->version == 4 ? load_be16(p + 4) : 0;
  flow.next_seq = load_be32(p + t + 4) + static_cast<std::uint32_t>(payload);
  flow.closed = push || flow.size + flow.gso_size > kMaxSuperPacket;
}

void TcpCoalescer::emit(Flow& flow, CoalescedSink& out) {
  ++stats_.written;
  std::uint8_t* p = flow.bytes.data();
  if (flow.segments == 1) {
    out.write_coalesced(VirtioNetHeader{}, {p, flow.size});
    return;
  }
  const bool v4 = (p[0] >> 4) == 4;
  if (v4) {
    store_be16(p + 2, static_cast<std::uint16_t>(flow.size));
    set_ipv4_checksum(p, flow.ip_header);
  } else {
    store_be16(p + 4, static_cast<std::uint16_t>(flow.size - 40));
  }
  // NEEDS_CSUM: the field holds the folded pseudo-header sum, not complemented; the kernel
  // (or whoever splits this again) adds the rest.
  const auto length = static_cast<std::uint32_t>(flow.size - flow.ip_header);
  store_be16(p + flow.ip_header + 16,
             checksum_fold(pseudo_header_sum(source_of(p), destination_of(p), kTcp, length)));
  VirtioNetHeader header;
  header.flags = VirtioNetHeader::kNeedsCsum;
  header.gso_type = v4 ? VirtioNetHeader::kGsoTcpV4 : VirtioNetHeader::kGsoTcpV6;
  header.hdr_len = static_cast<std::uint16_t>(flow.headers);
  header.gso_size = flow.gso_size;
  header.csum_start = static_cast<std::uint16_t>(flow.ip_header);
  header.csum_offset = 16;
  out.write_coalesced(header, {p, flow.size});
}

void TcpCoalescer::flush(CoalescedSink& out) {
  for (std::size_t i = 0; i < used_; ++i) emit(flows_[i], out);
  used_ = 0;
}

}  // namespace knit::tun
