// knitd's Prometheus metrics (`knitd --metrics IP:PORT`, opt-in): traffic and peers by path,
// handshakes, drops by reason (WireGuard core, packet filter, disco), the NAT table's size and
// the control connections. Read from the live objects at scrape time, on the event loop.
#pragma once

#include "agent/data_plane.hpp"
#include "agent/mesh_membership.hpp"
#include "base/metrics.hpp"

namespace knit::agent {

void register_knitd_metrics(metrics::Registry& registry, const DataPlane& plane,
                            const Membership& membership);

}  // namespace knit::agent
