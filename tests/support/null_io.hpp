// A WireGuard device's outside world that swallows everything: for tests (and benchmarks) of
// configuration, where no packet needs to go anywhere.
#pragma once

#include "wg/transport.hpp"

namespace knit::testing {

class NullIo : public wg::Transport, public wg::TunSink {
 public:
  void send(const wg::Peer&, std::span<const ByteSpan>) override {}
  void send_reply(const Endpoint&, ByteSpan) override {}
  void write_tun(MutableByteSpan) override {}
};

}  // namespace knit::testing
