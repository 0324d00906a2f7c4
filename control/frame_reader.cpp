#include "control/frame_reader.hpp"

#include <algorithm>

namespace knit::control {
namespace {
// A buffer that once held a large frame is given back rather than kept for the connection's life.
constexpr std::size_t kKeepCapacity = 64 * 1024;
}  // namespace

FrameReader::Status FrameReader::feed(ByteSpan& input) {
  if (too_large_) return Status::too_large;
  if (body_complete_) {
    // The previous frame was handed out: start the next one.
    body_complete_ = false;
    view_ = {};
    if (body_.capacity() > kKeepCapacity) {
      Bytes().swap(body_);
    } else {
      body_.clear();
    }
  }
  if (header_have_ < header_.size()) {
    const std::size_t n = std::min(header_.size() - header_have_, input.size());
    std::copy_n(input.begin(), n, header_.begin() + static_cast<std::ptrdiff_t>(header_have_));
    header_have_ += n;
    input = input.subspan(n);
    if (header_have_ < header_.size()) return Status::need_more;
    std::uint32_t length = load_be32(header_.data());
    split_ = split_allowed_ && (length & kSplitFlag) != 0;
    if (split_) length &= ~kSplitFlag;
    body_want_ = length;
    if (body_want_ > max_body_) {
      too_large_ = true;
      return Status::too_large;
    }
  }
  if (body_.empty() && input.size() >= body_want_) {
    // The whole body is in this input: hand it out where it is.
    view_ = input.first(body_want_);
    input = input.subspan(body_want_);
    header_have_ = 0;
    body_complete_ = true;
    return Status::frame;
  }
  const std::size_t n = std::min(body_want_ - body_.size(), input.size());
  body_.insert(body_.end(), input.begin(), input.begin() + static_cast<std::ptrdiff_t>(n));
  input = input.subspan(n);
  if (body_.size() < body_want_) return Status::need_more;
  header_have_ = 0;
  body_complete_ = true;
  view_ = body_;
  return Status::frame;
}

}  // namespace knit::control
