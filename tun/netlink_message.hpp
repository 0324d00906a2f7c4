// rtnetlink messages as bytes: a request builder and a reader for replies (no I/O here).
//
// A netlink datagram holds one or more messages, each 4-byte aligned (netlink(7), rtnetlink(7)):
//
//   0                   1                   2                   3
//   +-------------------------------------------------------------+
//   |                      length (whole message)                 |  struct nlmsghdr
//   +------------------------------+------------------------------+
//   |   type (RTM_NEWLINK, ...)    |   flags (NLM_F_REQUEST, ...) |
//   +------------------------------+------------------------------+
//   |                      sequence number                        |
//   +-------------------------------------------------------------+
//   |                      port id (0 = kernel)                   |
//   +-------------------------------------------------------------+
//   | family header: ifinfomsg (link), ifaddrmsg (address), rtmsg (route), padded to 4 |
//   +------------------------------+------------------------------+
//   |   attribute length           |   attribute type (IFLA_*)    |  struct rtattr, repeated
//   +------------------------------+------------------------------+
//   |   attribute payload, padded to 4 ...                        |
//   +-------------------------------------------------------------+
//
// Headers are copied in and out with memcpy, so no byte buffer is ever read through a
// struct pointer.
#pragma once

#include <cstdint>
#include <cstring>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/bytes.hpp"

namespace knit::tun::netlink {

inline constexpr std::size_t align4(std::size_t n) { return (n + 3) & ~std::size_t{3}; }

class Request {
 public:
  // type: RTM_*; flags: NLM_F_* (NLM_F_REQUEST is always added). Header: the family header.
  template <class Header>
  Request(std::uint16_t type, std::uint16_t flags, const Header& header)
      : Request(type, flags, ByteSpan(reinterpret_cast<const std::uint8_t*>(&header), sizeof header)) {}

  void add(std::uint16_t type, ByteSpan payload);
  void add_u32(std::uint16_t type, std::uint32_t value);
  // NUL-terminated, as the kernel expects for IFLA_IFNAME.
  void add_string(std::uint16_t type, std::string_view value);

  std::uint16_t flags() const;
  void set_flags(std::uint16_t flags);
  // The bytes to send, stamped with the sequence number the reply will carry.
  ByteSpan finish(std::uint32_t sequence);

 private:
  Request(std::uint16_t type, std::uint16_t flags, ByteSpan header);
  Bytes bytes_;
};

// One message of a reply; payload is everything after the nlmsghdr.
struct Message {
  std::uint16_t type = 0;
  std::uint16_t flags = 0;
  std::uint32_t sequence = 0;
  std::uint32_t port_id = 0;
  ByteSpan payload;
};

// Splits a received datagram into its messages; stops at the first malformed length.
std::vector<Message> split_messages(ByteSpan datagram);

// The family header at the start of a payload, if the payload is long enough.
template <class Header>
std::optional<Header> read_header(ByteSpan payload) {
  if (payload.size() < sizeof(Header)) return std::nullopt;
  Header header;
  std::memcpy(&header, payload.data(), sizeof header);
  return header;
}

// The attributes that follow a family header, looked up by type (first occurrence wins).
class Attributes {
 public:
  explicit Attributes(ByteSpan attributes) : bytes_(attributes) {}
  template <class Header>
  static Attributes after(ByteSpan payload) {
    const std::size_t start = align4(sizeof(Header));
    return Attributes(payload.size() > start ? payload.subspan(start) : ByteSpan{});
  }

  std::optional<ByteSpan> get(std::uint16_t type) const;
  std::optional<std::uint32_t> u32(std::uint16_t type) const;
  std::optional<std::string> string(std::uint16_t type) const;

 private:
  ByteSpan bytes_;
};

}  // namespace knit::tun::netlink
