// The operator: one user who may change knitd without root (`knit set --operator USER`), kept
// in STATE/operator.conf across restarts, and the control socket's authorization that uses it
// (control_access.hpp decides; this is its I/O: the user and group databases and the file).
// In front of every other handler: it answers the `operator` part of `knit set` and passes the
// rest on.
//
//   operator.conf   name=alice
//                   uid=1000
//
// The uid is what is checked: the name is resolved once, when set. A damaged file is reported
// and ignored (no operator), rather than keeping knitd from starting.
#pragma once

#include <filesystem>
#include <optional>
#include <string>

#include "agent/control_access.hpp"
#include "agent/control_server.hpp"

namespace knit::agent {

inline constexpr const char* kOperatorFile = "operator.conf";

struct OperatorSetting {
  std::string name;
  uid_t uid = 0;
  friend bool operator==(const OperatorSetting&, const OperatorSetting&) = default;
};
std::string encode_operator(const OperatorSetting& setting);
std::optional<OperatorSetting> parse_operator(const std::string& text, std::string& why);

class OperatorControl final : public ControlHandler {
 public:
  OperatorControl(std::filesystem::path state_dir, ControlHandler& next);

  // Reads operator.conf; problems are logged.
  void restore();
  const std::optional<OperatorSetting>& current() const { return operator_; }

  void handle_request(localapi::ControlRequest request, Reply reply) override;

  // The control server's check: nullopt to allow, else the refusal (control_access.hpp).
  std::optional<std::string> check(const std::optional<net::PeerCredentials>& caller,
                                   const localapi::ControlRequest& request) const;

 private:
  // Sets (or with "" clears) the operator; an error sentence, else empty.
  std::string set_operator(const std::string& user);

  std::filesystem::path state_dir_;
  ControlHandler& next_;
  std::optional<OperatorSetting> operator_;
};

}  // namespace knit::agent
