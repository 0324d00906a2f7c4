#include "tun/netlink_message.hpp"

#include <linux/netlink.h>
#include <linux/rtnetlink.h>

namespace knit::tun::netlink {
namespace {

void store_header(Bytes& bytes, const nlmsghdr& header) {
  std::memcpy(bytes.data(), &header, sizeof header);
}

nlmsghdr load_header(const Bytes& bytes) {
  nlmsghdr header;
  std::memcpy(&header, bytes.data(), sizeof header);
  return header;
}

}  // namespace

Request::Request(std::uint16_t type, std::uint16_t flags, ByteSpan header)
    : bytes_(NLMSG_HDRLEN + align4(header.size()), 0) {
  nlmsghdr nh{};
  nh.nlmsg_len = static_cast<std::uint32_t>(bytes_.size());
  nh.nlmsg_type = type;
  nh.nlmsg_flags = static_cast<std::uint16_t>(flags | NLM_F_REQUEST);
  store_header(bytes_, nh);
  std::memcpy(bytes_.data() + NLMSG_HDRLEN, header.data(), header.size());
}

void Request::add(std::uint16_t type, ByteSpan payload) {
  rtattr attribute{};
  attribute.rta_len = static_cast<unsigned short>(RTA_LENGTH(payload.size()));
  attribute.rta_type = type;
  const std::size_t start = bytes_.size();
  bytes_.resize(start + RTA_SPACE(payload.size()), 0);
  std::memcpy(bytes_.data() + start, &attribute, sizeof attribute);
  if (!payload.empty()) std::memcpy(bytes_.data() + start + RTA_LENGTH(0), payload.data(), payload.size());
  nlmsghdr nh = load_header(bytes_);
  nh.nlmsg_len = static_cast<std::uint32_t>(bytes_.size());
  store_header(bytes_, nh);
}

void Request::add_u32(std::uint16_t type, std::uint32_t value) {
  std::uint8_t native[sizeof value];  // netlink integers are in host byte order
  std::memcpy(native, &value, sizeof value);
  add(type, native);
}

void Request::add_string(std::uint16_t type, std::string_view value) {
  Bytes terminated(value.begin(), value.end());
  terminated.push_back(0);
  add(type, terminated);
}

std::uint16_t Request::flags() const { return load_header(bytes_).nlmsg_flags; }

void Request::set_flags(std::uint16_t flags) {
  nlmsghdr nh = load_header(bytes_);
  nh.nlmsg_flags = static_cast<std::uint16_t>(flags | NLM_F_REQUEST);
  store_header(bytes_, nh);
}

ByteSpan Request::finish(std::uint32_t sequence) {
  nlmsghdr nh = load_header(bytes_);
  nh.nlmsg_seq = sequence;
  store_header(bytes_, nh);
  return bytes_;
}

std::vector<Message> split_messages(ByteSpan datagram) {
  std::vector<Message> messages;
  while (datagram.size() >= NLMSG_HDRLEN) {
    nlmsghdr nh;
    std::memcpy(&nh, datagram.data(), sizeof nh);
    if (nh.nlmsg_len < NLMSG_HDRLEN || nh.nlmsg_len > datagram.size()) break;
    messages.push_back(Message{nh.nlmsg_type, nh.nlmsg_flags, nh.nlmsg_seq, nh.nlmsg_pid,
                               datagram.subspan(NLMSG_HDRLEN, nh.nlmsg_len - NLMSG_HDRLEN)});
    const std::size_t next = align4(nh.nlmsg_len);
    if (next >= datagram.size()) break;
    datagram = datagram.subspan(next);
  }
  return messages;
}

std::optional<ByteSpan> Attributes::get(std::uint16_t type) const {
  ByteSpan rest = bytes_;
  while (rest.size() >= RTA_LENGTH(0)) {
    rtattr attribute;
    std::memcpy(&attribute, rest.data(), sizeof attribute);
    if (attribute.rta_len < RTA_LENGTH(0) || attribute.rta_len > rest.size()) break;
    // The top bits of the type flag nesting and byte order; the rest is the type itself.
    if ((attribute.rta_type & NLA_TYPE_MASK) == type) {
      return rest.subspan(RTA_LENGTH(0), attribute.rta_len - RTA_LENGTH(0));
    }
    const std::size_t next = RTA_ALIGN(attribute.rta_len);
    if (next >= rest.size()) break;
    rest = rest.subspan(next);
  }
  return std::nullopt;
}

std::optional<std::uint32_t> Attributes::u32(std::uint16_t type) const {
  auto payload = get(type);
  if (!payload || payload->size() < sizeof(std::uint32_t)) return std::nullopt;
  std::uint32_t value;
  std::memcpy(&value, payload->data(), sizeof value);
  return value;
}

std::optional<std::string> Attributes::string(std::uint16_t type) const {
  auto payload = get(type);
  if (!payload) return std::nullopt;
  std::string value(payload->begin(), payload->end());
  if (auto nul = value.find('\0'); nul != std::string::npos) value.resize(nul);
  return value;
}

}  // namespace knit::tun::netlink
