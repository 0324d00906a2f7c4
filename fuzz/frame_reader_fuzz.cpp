// The control stream's frame reader (control/frame_reader.hpp), fed any bytes in chunks the
// input chooses. Differential: the frames it yields are exactly those of a naive reader that
// sees the whole stream at once, and no frame exceeds the limit. With split frames allowed (the
// chunking seed's top bit) the length's top bit is a mark both readers take off and report.
#include <cstddef>
#include <cstdint>
#include <vector>

#include "control/frame_reader.hpp"
#include "fuzz/fuzz_util.hpp"

using namespace knit;

namespace {

// The whole stream at once: length be32, body; stops at the first over-limit header.
struct Naive {
  std::vector<Bytes> frames;
  std::vector<bool> split;
  bool too_large = false;
};

Naive naive_frames(const Bytes& stream, std::size_t limit, bool split_allowed) {
  Naive out;
  std::size_t at = 0;
  while (stream.size() - at >= 4) {
    std::size_t length = (std::size_t{stream[at]} << 24) | (std::size_t{stream[at + 1]} << 16) |
                         (std::size_t{stream[at + 2]} << 8) | stream[at + 3];
    const bool split = split_allowed && length >= 0x80000000u;
    if (split) length -= 0x80000000u;
    if (length > limit) {
      out.too_large = true;
      return out;
    }
    if (stream.size() - at - 4 < length) break;
    out.frames.emplace_back(stream.begin() + static_cast<std::ptrdiff_t>(at + 4),
                            stream.begin() + static_cast<std::ptrdiff_t>(at + 4 + length));
    out.split.push_back(split);
    at += 4 + length;
  }
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  // Input: limit u16 (mod 4097) | chunking seed u8 | the stream.
  fuzz::Reader in(data, size);
  const std::size_t limit = in.u16() % 4097;
  const std::uint8_t chunk_seed = in.u8();
  const Bytes stream = in.rest();

  const bool split_allowed = (chunk_seed & 0x80) != 0;
  control::FrameReader reader(limit);
  reader.set_split_allowed(split_allowed);
  std::vector<Bytes> frames;
  std::vector<bool> split;
  bool too_large = false;
  std::size_t at = 0;
  std::size_t chunk = 1 + chunk_seed % 17;
  while (at < stream.size() && !too_large) {
    const std::size_t n = std::min(chunk, stream.size() - at);
    ByteSpan input(stream.data() + at, n);
    while (true) {
      const auto status = reader.feed(input);
      if (status == control::FrameReader::Status::too_large) {
        too_large = true;
        break;
      }
      if (status == control::FrameReader::Status::need_more) {
        KNIT_FUZZ_CHECK(input.empty());
        break;
      }
      KNIT_FUZZ_CHECK(reader.body().size() <= limit);
      frames.emplace_back(reader.body().begin(), reader.body().end());
      split.push_back(reader.split());
      KNIT_FUZZ_CHECK(split_allowed || !reader.split());
    }
    at += n;
    chunk = 1 + (chunk * 7 + chunk_seed) % 23;
  }
  const Naive expected = naive_frames(stream, limit, split_allowed);
  KNIT_FUZZ_CHECK(frames == expected.frames);
  KNIT_FUZZ_CHECK(split == expected.split);
  KNIT_FUZZ_CHECK(too_large == expected.too_large);
  if (too_large) {
    ByteSpan more(stream.data(), 0);
    KNIT_FUZZ_CHECK(reader.feed(more) == control::FrameReader::Status::too_large);
  }
  return 0;
}
