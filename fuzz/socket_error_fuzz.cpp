// net/socket_error: one message of a UDP socket's error queue (IP_RECVERR). Input: 1 byte of
// name length, the name (msg_name), then the control bytes (msg_control). Properties: a
// too-big verdict has a destination and an MTU of at least kMinHintMtu; anything else has no
// MTU; the same input gives the same verdict and offender; nothing is read outside the input
// (ASan).
#include <cstddef>
#include <cstdint>

#include "fuzz/fuzz_util.hpp"
#include "net/socket_error.hpp"

using namespace knit;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  fuzz::Reader in(data, size);
  const Bytes name = in.bytes(in.u8());
  const Bytes control = in.rest();
  const net::SocketError e = net::parse_socket_error(control, name);
  if (e.kind == net::SocketErrorKind::too_big) {
    KNIT_FUZZ_CHECK(e.destination.has_value());
    KNIT_FUZZ_CHECK(e.mtu >= net::kMinHintMtu);
  } else {
    KNIT_FUZZ_CHECK(e.mtu == 0);
  }
  const net::SocketError again = net::parse_socket_error(control, name);
  KNIT_FUZZ_CHECK(again.kind == e.kind && again.mtu == e.mtu && again.destination == e.destination &&
                  again.offender == e.offender);
  return 0;
}
