// Relay frames (relay/frame.hpp): parse_frame, parse_hello and parse_result on any bytes, as a
// relay reads a client's and a client a relay's. Property: a frame that parses re-encodes to
// exactly the bytes it came from (one spelling per frame); handshake payloads keep their
// fields through encode.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <vector>

#include "fuzz/fuzz_util.hpp"
#include "relay/frame.hpp"

using namespace knit;
using namespace knit::relay;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const ByteSpan input(data, size);
  if (const auto hello = parse_hello(input)) {
    const auto again = parse_hello(encode(*hello));
    KNIT_FUZZ_CHECK(again && again->version == hello->version && again->role == hello->role);
  }
  if (const auto result = parse_result(input)) {
    const auto again = parse_result(encode(*result));
    KNIT_FUZZ_CHECK(again && again->status == result->status &&
                    again->keepalive_s == result->keepalive_s);
  }

  Frame frame;
  const ParseError error = parse_frame(input, frame);
  (void)to_string(error);
  if (error != ParseError::ok) return 0;
  (void)to_string(frame.type);
  Bytes out;
  bool encoded = true;
  switch (frame.type) {
    case FrameType::send: encoded = encode_send(frame.dst, frame.packet, out); break;
    case FrameType::recv: encoded = encode_recv(frame.src, frame.packet, out); break;
    case FrameType::forward: encoded = encode_forward(frame.src, frame.dst, frame.packet, out); break;
    case FrameType::keepalive: encode_keepalive(out); break;
    case FrameType::ping: encode_ping(frame.token, out); break;
    case FrameType::pong: encode_pong(frame.token, out); break;
    case FrameType::peer_gone:
      encode_peer_gone(frame.dst, static_cast<GoneReason>(frame.reason), out);
      break;
    case FrameType::closing: encode_closing(static_cast<CloseReason>(frame.reason), out); break;
    case FrameType::present:
    case FrameType::absent: {
      std::vector<NodeKey> keys;
      for (std::size_t i = 0; i < frame.key_count(); ++i) keys.push_back(frame.key(i));
      KNIT_FUZZ_CHECK(frame.keys.size() == keys.size() * kKeySize);
      encoded = encode_keys(frame.type, keys, out);
      break;
    }
  }
  KNIT_FUZZ_CHECK(encoded);
  KNIT_FUZZ_CHECK(out.size() == size && std::equal(out.begin(), out.end(), data));
  return 0;
}
