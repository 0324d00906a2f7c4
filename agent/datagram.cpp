#include "agent/datagram.hpp"

#include "punch/path/disco.hpp"
#include "punch/stun/message.hpp"

namespace knit::agent {

DatagramKind classify_datagram(ByteSpan d) {
  if (d.size() >= 4 && d[0] >= 1 && d[0] <= 4 && d[1] == 0 && d[2] == 0 && d[3] == 0)
    return DatagramKind::wireguard;
  if (punch::looks_like_disco(d)) return DatagramKind::disco;
  if (punch::looks_like_stun(d)) return DatagramKind::stun;
  return DatagramKind::other;
}

}  // namespace knit::agent
