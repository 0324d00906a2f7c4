#include "wg/messages.hpp"

namespace knit::wg {
namespace {

constexpr std::size_t kHeaderSize = 4;
constexpr std::size_t kIndexSize = 4;
constexpr std::size_t kCounterOffset = 8;

bool type_is(ByteSpan msg, MessageType type) {
  return !msg.empty() && msg[0] == static_cast<std::uint8_t>(type);
}

// Reads a LE32 at offset when the message is long enough, else 0.
std::uint32_t le32_at(ByteSpan msg, std::size_t offset) {
  return msg.size() >= offset + kIndexSize ? load_le32(msg.data() + offset) : 0;
}

}  // namespace

Classified classify(ByteSpan datagram) {
  // Checked in order: header length, type, reserved bytes, then the type's size rule.
  if (datagram.size() < kHeaderSize) return Classified::too_short;
  const std::uint8_t type = datagram[0];
  if (type < static_cast<std::uint8_t>(MessageType::initiation) ||
      type > static_cast<std::uint8_t>(MessageType::data)) {
    return Classified::unknown_type;
  }
  if (datagram[1] != 0 || datagram[2] != 0 || datagram[3] != 0) return Classified::bad_reserved;
  const std::size_t size = datagram.size();
  switch (static_cast<MessageType>(type)) {
    case MessageType::initiation:
      return size == kInitiationSize ? Classified::initiation : Classified::bad_size;
    case MessageType::response:
      return size == kResponseSize ? Classified::response : Classified::bad_size;
    case MessageType::cookie_reply:
      return size == kCookieReplySize ? Classified::cookie_reply : Classified::bad_size;
    case MessageType::data:
      break;
  }
  return size >= kMinDataSize && size <= kMaxDatagramSize ? Classified::data
                                                           : Classified::bad_size;
}

std::uint32_t sender_index(ByteSpan msg) {
  if (type_is(msg, MessageType::initiation) || type_is(msg, MessageType::response)) {
    return le32_at(msg, 4);
  }
  return 0;
}

std::uint32_t receiver_index(ByteSpan msg) {
  if (type_is(msg, MessageType::response)) return le32_at(msg, 8);
  if (type_is(msg, MessageType::cookie_reply) || type_is(msg, MessageType::data)) {
    return le32_at(msg, 4);
  }
  return 0;
}

std::uint64_t data_counter(ByteSpan msg) {
  if (!type_is(msg, MessageType::data) || msg.size() < kCounterOffset + 8) return 0;
  return load_le64(msg.data() + kCounterOffset);
}

}  // namespace knit::wg
