// Classifying WireGuard datagrams before anything else looks at them (whitepaper §5.4).
// Every message starts with a type byte and three zero reserved bytes; handshake and cookie
// messages have one exact size; data is at least a header and a tag (a keepalive):
//
//   0 type | 1 reserved[3] | 4 ...
//   initiation 148, response 92, cookie reply 64, data 32 .. kMaxDatagramSize
//
// The index and counter readers expect a datagram classify() accepted as a fitting type;
// on anything else they return 0 rather than read out of bounds.
#pragma once

#include <cstdint>

#include "base/bytes.hpp"
#include "wg/constants.hpp"

namespace knit::wg {

enum class Classified {
  initiation,
  response,
  cookie_reply,
  data,
  too_short,     // shorter than the 4-byte type and reserved header
  unknown_type,  // type 0 or 5..255
  bad_reserved,  // a nonzero reserved byte
  bad_size,      // the wrong size for its type (data below kMinDataSize or past kMaxDatagramSize)
};

Classified classify(ByteSpan datagram);

std::uint32_t sender_index(ByteSpan msg);    // initiation, response
std::uint32_t receiver_index(ByteSpan msg);  // response, cookie reply, data
std::uint64_t data_counter(ByteSpan msg);    // data

}  // namespace knit::wg
