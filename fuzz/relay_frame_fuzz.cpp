// Relay frames (relay/frame.hpp): parse_frame, parse_hello and parse_result on any bytes, as a
// relay reads a client's and a client a relay's. Property: a frame that parses re-encodes to
// exactly the bytes it came from (one spelling per frame); handshake payloads keep their
// fields (features included) through encode. parse_split_frame, with the first byte as the
// size of the sealed head and the rest as the message: it accepts only a data frame whose head
// is exactly what was sealed, and then agrees with parse_frame. parse_run, with the first byte
// (mod 70) as the number of packets the channel reported: a run it accepts has exactly that
// many packets, none empty, filling what lies between the head and the trailer.
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
    KNIT_FUZZ_CHECK(again && again->version == hello->version && again->role == hello->role &&
                    again->features == hello->features);
  }
  if (const auto result = parse_result(input)) {
    const auto again = parse_result(encode(*result));
    KNIT_FUZZ_CHECK(again && again->status == result->status &&
                    again->keepalive_s == result->keepalive_s && again->features == result->features);
  }
  if (!input.empty()) {
    Frame split;
    const ByteSpan message = input.subspan(1);
    const ParseError split_error = parse_split_frame(message, input[0], split);
    (void)to_string(split_error);
    if (split_error == ParseError::ok) {
      KNIT_FUZZ_CHECK(split_head_size(split.type) == input[0]);
      Frame whole;
      KNIT_FUZZ_CHECK(parse_frame(message, whole) == ParseError::ok);
      KNIT_FUZZ_CHECK(whole.type == split.type && whole.packet.size() == split.packet.size());
    }
  }

  if (!input.empty()) {
    RunFrame run;
    const std::size_t tails = input[0] % 70;
    const ParseError run_error = parse_run(input.subspan(1), kDataHeadSize, tails, run);
    (void)to_string(run_error);
    if (run_error == ParseError::ok) {
      KNIT_FUZZ_CHECK(run.count() == tails && (run.type == FrameType::send || run.type == FrameType::recv));
      std::size_t seen = 0, total = 0;
      run.for_each([&](ByteSpan packet) {
        KNIT_FUZZ_CHECK(!packet.empty());
        ++seen;
        total += packet.size();
      });
      KNIT_FUZZ_CHECK(seen == tails && total == run.packets.size());
      KNIT_FUZZ_CHECK(kDataHeadSize + run.after_head().size() == size - 1);
    }
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
