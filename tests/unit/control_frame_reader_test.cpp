// FrameReader (control/frame_reader.hpp): many frames in one input are handed out where they
// are (no copy), a frame cut across inputs is assembled, limits hold.
#include <gtest/gtest.h>

#include <vector>

#include "base/random.hpp"
#include "control/frame_reader.hpp"

namespace knit::control {
namespace {

Bytes frame_of(const Bytes& body) {
  Bytes out(kFrameHeaderSize);
  store_be32(out.data(), static_cast<std::uint32_t>(body.size()));
  out.insert(out.end(), body.begin(), body.end());
  return out;
}

std::vector<Bytes> bodies(std::size_t n) {
  std::vector<Bytes> out;
  for (std::size_t i = 0; i < n; ++i) out.emplace_back(i * 13 % 200, static_cast<std::uint8_t>(i));
  return out;
}

TEST(FrameReader, ManyFramesInOneInputAreNotCopied) {
  const auto want = bodies(40);
  Bytes stream;
  for (const Bytes& b : want) {
    const Bytes f = frame_of(b);
    stream.insert(stream.end(), f.begin(), f.end());
  }
  FrameReader reader(1024);
  ByteSpan input(stream);
  std::size_t i = 0;
  while (!input.empty()) {
    ASSERT_EQ(reader.feed(input), FrameReader::Status::frame);
    ASSERT_LT(i, want.size());
    EXPECT_EQ(Bytes(reader.body().begin(), reader.body().end()), want[i]);
    if (!reader.body().empty()) {
      // The body lies in the input itself.
      EXPECT_GE(reader.body().data(), stream.data());
      EXPECT_LE(reader.body().data() + reader.body().size(), stream.data() + stream.size());
    }
    ++i;
  }
  EXPECT_EQ(i, want.size());
  EXPECT_EQ(reader.pending(), 0u);
}

TEST(FrameReader, FramesCutAnywhereAreAssembled) {
  const auto want = bodies(25);
  Bytes stream;
  for (const Bytes& b : want) {
    const Bytes f = frame_of(b);
    stream.insert(stream.end(), f.begin(), f.end());
  }
  SeededRandom rng(5);
  for (int trial = 0; trial < 50; ++trial) {
    FrameReader reader(1024);
    std::vector<Bytes> got;
    std::size_t at = 0;
    while (at < stream.size()) {
      const std::size_t piece = std::min<std::size_t>(1 + rng.uniform(trial < 5 ? 1 : 300), stream.size() - at);
      ByteSpan input(stream.data() + at, piece);
      at += piece;
      while (!input.empty()) {
        const auto status = reader.feed(input);
        ASSERT_NE(status, FrameReader::Status::too_large);
        if (status == FrameReader::Status::frame) got.emplace_back(reader.body().begin(), reader.body().end());
      }
    }
    EXPECT_EQ(got, want) << "trial " << trial;
    EXPECT_EQ(reader.pending(), 0u);
  }
}

TEST(FrameReader, OverTheLimitIsFatalBeforeAnyBodyIsRead) {
  FrameReader reader(100);
  Bytes stream = frame_of(Bytes(101, 1));
  ByteSpan input(stream);
  EXPECT_EQ(reader.feed(input), FrameReader::Status::too_large);
  Bytes more = frame_of(Bytes(1, 1));
  ByteSpan again(more);
  EXPECT_EQ(reader.feed(again), FrameReader::Status::too_large);
}

}  // namespace
}  // namespace knit::control
