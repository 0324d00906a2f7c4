// What arrives on knitd's sockets, and the one place that says which protocol it belongs to.
// Every datagram, whichever path brought it (the main UDP socket, a probe socket, the relay),
// is classified here and nowhere else:
//
//   WireGuard  byte 0 = type 1..4, bytes 1..3 zero (a little-endian u32)   -> the device
//   disco      "KNIT" 0x44 0x31 (punch/path/disco.hpp)                      -> the PathManager
//   STUN       top two bits 00, length, magic cookie (punch/stun/wire.hpp)  -> netcheck
//   other      nobody's: counted and dropped
//
// The three never overlap: disco starts with 'K' (0x4b, not 1..4 and not 00xxxxxx), and a
// STUN message's first byte is 0x00 or 0x01 with its cookie at offset 4.
#pragma once

#include <cstdint>
#include <span>

#include "base/bytes.hpp"
#include "base/ip.hpp"
#include "wg/device.hpp"

namespace knit::agent {

enum class DatagramKind : std::uint8_t { wireguard, disco, stun, other };

DatagramKind classify_datagram(ByteSpan datagram);

// A WireGuard datagram as it came in. The bytes are the receiving buffer's, good until the
// call that hands them over returns; the receiver may decrypt them in place.
struct ReceivedDatagram {
  Endpoint from;
  MutableByteSpan bytes;
};

// The loop that owns the WireGuard device (data_plane.hpp): every transport delivers the
// WireGuard datagrams it received here, a batch at a time, in arrival order.
class WireGuardReceiver {
 public:
  virtual ~WireGuardReceiver() = default;
  virtual void on_wireguard(wg::Now now, std::span<const ReceivedDatagram> batch) = 0;
};

}  // namespace knit::agent
