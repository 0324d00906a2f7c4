#include "relay/client_session.hpp"

#include <algorithm>
#include <array>

namespace knit::relay {

ClientSession::ClientSession(const wg::PrivateKey& my_key, const NodeKey& relay_key, Role role)
    : channel_(control::Channel::initiator(my_key, relay_key, kMaxNoiseFrame, kRelayPrologue)),
      role_(role) {
  channel_.set_lend_messages(true);
}

ClientSession::Step ClientSession::fail(std::string why) {
  over_ = true;
  admitted_ = false;
  error_ = std::move(why);
  Step step;
  step.kind = Step::Kind::failed;
  step.error = error_;
  return step;
}

bool ClientSession::start(Random& rng, Bytes& frame) {
  Hello hello;
  hello.role = role_;
  hello.features = offered_;
  const control::ChannelError err = channel_.start(rng, encode(hello), frame);
  if (err != control::ChannelError::ok) {
    (void)fail(std::string(control::to_string(err)));
    return false;
  }
  return true;
}

ClientSession::Step ClientSession::feed(ByteSpan& input) {
  Step step;
  if (over_) {
    input = {};
    step.kind = Step::Kind::failed;
    step.error = error_;
    return step;
  }
  control::ChannelEvent event = channel_.feed(input);
  switch (event.kind) {
    case control::ChannelEvent::Kind::need_more:
      return step;
    case control::ChannelEvent::Kind::error:
      if (event.error == control::ChannelError::decrypt_failed && !admitted_)
        return fail("the relay's handshake did not verify (wrong relay key?)");
      return fail(std::string(control::to_string(event.error)));
    case control::ChannelEvent::Kind::request:  // only a responder sees this
      return fail("unexpected handshake request");
    case control::ChannelEvent::Kind::handshake_done: {
      const auto result = parse_result(event.data);
      if (!result) return fail("malformed handshake answer");
      step.result = *result;
      if (result->status != Admission::ok) {
        over_ = true;
        error_ = "refused: " + std::string(to_string(result->status));
        step.kind = Step::Kind::refused;
        return step;
      }
      admitted_ = true;
      // A relay may grant only what we offered; anything else is ignored.
      granted_ = result->features & offered_;
      if (!split_data()) granted_ &= static_cast<std::uint8_t>(~kFeatureDataRuns);  // runs ride on split
      channel_.set_split_frames(split_data());
      channel_.set_run_frames(data_runs());
      step.kind = Step::Kind::admitted;
      return step;
    }
    case control::ChannelEvent::Kind::message:
      plaintext_ = event.lent;
      if (event.run_tails > 0) {
        step.parse = parse_run(plaintext_, event.sealed_size, event.run_tails, step.run);
        step.kind = step.parse == ParseError::ok ? Step::Kind::run : Step::Kind::bad_frame;
        return step;
      }
      step.parse = event.split ? parse_split_frame(plaintext_, event.sealed_size, step.frame)
                               : parse_frame(plaintext_, step.frame);
      step.kind = step.parse == ParseError::ok ? Step::Kind::frame : Step::Kind::bad_frame;
      return step;
  }
  return fail("unexpected channel event");
}

bool ClientSession::seal(ByteSpan frame, Bytes& out) {
  if (!admitted_ || !flush_run()) return false;
  const control::ChannelError err = channel_.seal(frame, out);
  if (err != control::ChannelError::ok) {
    (void)fail(std::string(control::to_string(err)));
    return false;
  }
  return true;
}

bool ClientSession::seal_append(ByteSpan frame, Bytes& out) {
  if (!admitted_ || !flush_run()) return false;
  const control::ChannelError err = channel_.seal_append(frame, out);
  if (err == control::ChannelError::ok) return true;
  if (!channel_.is_open()) (void)fail(std::string(control::to_string(err)));
  return false;
}

bool ClientSession::seal_data(ByteSpan head, ByteSpan packet, Bytes& out) {
  if (!admitted_ || packet.empty() || packet.size() > kMaxPacketSize || head.empty() ||
      split_head_size(static_cast<FrameType>(head[0])) != head.size() || !flush_run())
    return false;
  const control::ChannelError err = split_data()
                                        ? channel_.seal_split_append(head, packet, out)
                                        : seal_whole(head, packet, out);
  if (err == control::ChannelError::ok) return true;
  if (!channel_.is_open()) (void)fail(std::string(control::to_string(err)));
  return false;
}

control::ChannelError ClientSession::seal_whole(ByteSpan head, ByteSpan packet, Bytes& out) {
  const std::size_t at = out.size();
  out.resize(at + control::kFrameHeaderSize + head.size() + packet.size());
  std::uint8_t* p = out.data() + at + control::kFrameHeaderSize;
  p = std::copy(head.begin(), head.end(), p);
  std::copy(packet.begin(), packet.end(), p);
  return channel_.seal_tail(out, at);
}

bool ClientSession::add_to_run(const NodeKey& dst, ByteSpan packet, Bytes& out) {
  constexpr std::size_t kBeforePackets = control::kFrameHeaderSize + 1 + kDataHeadSize + control::kAeadTagSize;
  if (run_out_ != nullptr && (run_out_ != &out || run_dst_ != dst || run_count_ == control::kMaxRunTails ||
                              run_bytes_ + packet.size() > kMaxRunBytes)) {
    if (!flush_run()) return false;
  }
  if (run_out_ == nullptr) {
    run_out_ = &out;
    run_at_ = out.size();
    run_dst_ = dst;
    run_count_ = 0;
    run_bytes_ = 0;
    out.resize(run_at_ + kBeforePackets);
    std::uint8_t* head = out.data() + run_at_ + control::kFrameHeaderSize + 1;
    head[0] = static_cast<std::uint8_t>(FrameType::send);
    std::copy(dst.begin(), dst.end(), head + 1);
  }
  out.insert(out.end(), packet.begin(), packet.end());
  run_lengths_[run_count_++] = static_cast<std::uint16_t>(packet.size());
  run_bytes_ += packet.size();
  return true;
}

bool ClientSession::seal_run_unchecked(ByteSpan head, ByteSpan after_head, Bytes& out) {
  if (!admitted_ || !flush_run() || head.empty() || head.size() > control::kMaxRunHead) return false;
  const std::size_t at = out.size();
  out.resize(at + control::kFrameHeaderSize + 1 + head.size() + control::kAeadTagSize + after_head.size());
  std::uint8_t* p = out.data() + at + control::kFrameHeaderSize + 1;
  std::copy(head.begin(), head.end(), p);
  std::copy(after_head.begin(), after_head.end(), p + head.size() + control::kAeadTagSize);
  return channel_.seal_run(out, at, head.size()) == control::ChannelError::ok;
}

bool ClientSession::flush_run() {
  if (run_out_ == nullptr) return true;
  Bytes& out = *run_out_;
  run_out_ = nullptr;
  for (std::size_t i = 0; i < run_count_; ++i) {
    const std::uint16_t length = run_lengths_[i];
    out.push_back(static_cast<std::uint8_t>(length >> 8));
    out.push_back(static_cast<std::uint8_t>(length));
  }
  out.push_back(static_cast<std::uint8_t>(run_count_));
  const control::ChannelError err = channel_.seal_run(out, run_at_, kDataHeadSize);
  if (err == control::ChannelError::ok) return true;
  if (!channel_.is_open()) (void)fail(std::string(control::to_string(err)));
  return false;
}

bool ClientSession::seal_send(const NodeKey& dst, ByteSpan packet, Bytes& out) {
  if (!admitted_ || packet.empty() || packet.size() > kMaxPacketSize) return false;
  if (data_runs()) return add_to_run(dst, packet, out);
  if (split_data()) {
    std::array<std::uint8_t, kDataHeadSize> head;
    head[0] = static_cast<std::uint8_t>(FrameType::send);
    std::copy(dst.begin(), dst.end(), head.begin() + 1);
    return seal_data(head, packet, out);
  }
  const std::size_t at = out.size();
  out.resize(at + control::kFrameHeaderSize + 1 + kKeySize + packet.size());
  std::uint8_t* p = out.data() + at + control::kFrameHeaderSize;
  *p++ = static_cast<std::uint8_t>(FrameType::send);
  p = std::copy(dst.begin(), dst.end(), p);
  std::copy(packet.begin(), packet.end(), p);
  const control::ChannelError err = channel_.seal_tail(out, at);
  if (err == control::ChannelError::ok) return true;
  if (!channel_.is_open()) (void)fail(std::string(control::to_string(err)));
  return false;
}

MutableByteSpan ClientSession::writable(ByteSpan packet) {
  const std::uint8_t* begin = plaintext_.data();
  const std::uint8_t* end = begin + plaintext_.size();
  if (packet.empty() || packet.data() < begin || packet.data() + packet.size() > end) return {};
  return MutableByteSpan(plaintext_.data() + (packet.data() - begin), packet.size());
}

}  // namespace knit::relay
