// The CLI's questions about the mesh, answered from the membership, the mesh's paths and the
// WireGuard device: `knit status`, `ip`, `ping` (which peer, which path), `netcheck`,
// `version`; `up` and `down` go to the membership's join state machine. The shields and port
// forwards are answered in front of this by filter_control.hpp.
#pragma once

#include "agent/control_server.hpp"
#include "agent/mesh_membership.hpp"

namespace knit::agent {

class LocalApi final : public ControlHandler {
 public:
  explicit LocalApi(Membership& membership) : membership_(membership) {}

  void handle_request(localapi::ControlRequest request, Reply reply) override;

 private:
  localapi::ControlResponse status();
  localapi::ControlResponse ip() const;
  localapi::ControlResponse ping_info(const std::string& query);
  void netcheck(Reply reply);

  Membership& membership_;
};

}  // namespace knit::agent
