// The WireGuard cross-platform UAPI (wg/uapi.hpp) answered from knitd's device and socket, so
// stock `wg show` / `wg set` work on knitd as on wireguard-go. A `set` is checked in full
// before anything changes: a request with an error changes nothing.
#pragma once

#include "agent/data_plane.hpp"
#include "agent/udp_transport.hpp"
#include "agent/uapi_server.hpp"

namespace knit::agent {

class UapiDevice final : public UapiHandler {
 public:
  UapiDevice(DataPlane& plane, UdpTransport& udp) : plane_(plane), udp_(udp) {}

  wg::UapiDeviceState uapi_get() override;
  int uapi_set(const wg::UapiSet& request) override;

 private:
  DataPlane& plane_;
  UdpTransport& udp_;
};

}  // namespace knit::agent
