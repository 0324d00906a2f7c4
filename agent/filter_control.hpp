// FilterControl: the CLI's shields and port-forward commands (`knit set`, `knit forward ...`;
// `knit up --shields-up` sends a set before its up), answered in front of the membership, which gets every other request.
// Each change is applied to the packet filter at once and saved (forward_store.hpp), so it
// holds across knitd restarts. `status` answers get the filter's part of "self" added.
#pragma once

#include "agent/control_server.hpp"
#include "agent/forward_store.hpp"
#include "agent/packet_filter.hpp"

namespace knit::agent {

class FilterControl final : public ControlHandler {
 public:
  FilterControl(PacketFilter& filter, ForwardStore store, ControlHandler& next)
      : filter_(filter), store_(std::move(store)), next_(next) {}

  // Applies the saved settings to the filter; problems are logged (knitd starts anyway).
  void restore();
  localapi::FilterStatus status() const;

  void handle_request(localapi::ControlRequest request, Reply reply) override;

 private:
  localapi::ControlResponse set(const localapi::SetRequest& request);
  localapi::ControlResponse forward_add(const localapi::ForwardAddRequest& request);
  localapi::ControlResponse forward_remove(const localapi::ForwardRemoveRequest& request);
  // Saves the current settings; an error sentence when that failed, else empty.
  std::string save();

  PacketFilter& filter_;
  ForwardStore store_;
  ControlHandler& next_;
};

}  // namespace knit::agent
