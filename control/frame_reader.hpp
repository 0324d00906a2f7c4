// Splits the control stream into frames, holding at most one partial frame:
//
//   0 length be32 | 4 body[length]          length <= the reader's limit (at most 16 MiB)
//
// With split frames allowed (set_split_allowed), the length's top bit (kSplitFlag) is a mark
// the reader takes off and reports (split(), header()); without, it makes the length too large.
//
// A declared length over the limit is fatal and is refused before anything is allocated for
// it; a frame within the limit grows its buffer only as its bytes actually arrive, so a peer
// that announces 16 MiB and sends ten bytes costs ten bytes. A frame whose body lies whole in
// the input given to one feed() is not copied at all: body() then points into that input (the
// caller's read buffer), which is how a busy stream of many frames per read costs no copy.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>

#include "base/bytes.hpp"
#include "control/constants.hpp"

namespace knit::control {

class FrameReader {
 public:
  enum class Status {
    need_more,  // input is used up in the middle of a frame
    frame,      // body() holds one whole frame
    too_large,  // the header declares more than the limit: the stream is unusable from here
  };

  explicit FrameReader(std::size_t max_body = kMaxFrameSize) : max_body_(max_body) {}

  // Consumes bytes from input, advancing it, up to the end of one frame: after `frame` the
  // rest of input is untouched. After too_large every call returns too_large.
  Status feed(ByteSpan& input);
  // The last frame; valid until the next feed() and, when it was not copied (header comment),
  // only as long as the input given to the feed() that returned it.
  ByteSpan body() const { return view_; }
  std::size_t max_body() const { return max_body_; }
  void set_split_allowed(bool allowed) { split_allowed_ = allowed; }
  // The last frame carried kSplitFlag (only when allowed).
  bool split() const { return split_; }
  // The last frame's length header as it was on the wire (the flag included).
  const std::array<std::uint8_t, kFrameHeaderSize>& header() const { return header_; }
  // Bytes of a frame still incomplete.
  std::size_t pending() const { return body_complete_ ? 0 : header_have_ + body_.size(); }

 private:
  std::size_t max_body_;
  std::array<std::uint8_t, kFrameHeaderSize> header_{};
  std::size_t header_have_ = 0;
  std::size_t body_want_ = 0;
  Bytes body_;     // a frame that arrives in pieces
  ByteSpan view_;  // the last whole frame: body_, or a slice of the input
  bool body_complete_ = false;
  bool too_large_ = false;
  bool split_allowed_ = false;
  bool split_ = false;
};

}  // namespace knit::control
