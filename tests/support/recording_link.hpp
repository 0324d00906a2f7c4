// A LinkControl (agent/mesh.hpp) that does nothing but write down what it was asked, as
// "up", "addr+ P", "addr- P", "route+ P", "route- P". Every call answers `fail_with`; adding the
// route `refuse_route` answers "file exists" (the host has that route already).
#pragma once

#include <optional>
#include <string>
#include <system_error>
#include <vector>

#include "agent/mesh.hpp"

namespace knit::testing {

class RecordingLink : public agent::LinkControl {
 public:
  std::error_code set_up() override { return record("up"); }
  std::error_code add_address(const IpPrefix& p) override { return record("addr+ " + p.to_string()); }
  std::error_code remove_address(const IpPrefix& p) override { return record("addr- " + p.to_string()); }
  std::error_code add_route(const IpPrefix& d) override {
    if (refuse_route && d == *refuse_route) {
      ops.push_back("route+ " + d.to_string());
      return std::make_error_code(std::errc::file_exists);
    }
    return record("route+ " + d.to_string());
  }
  std::error_code remove_route(const IpPrefix& d) override { return record("route- " + d.to_string()); }

  std::vector<std::string> ops;
  std::error_code fail_with;
  std::optional<IpPrefix> refuse_route;

 private:
  std::error_code record(std::string op) {
    ops.push_back(std::move(op));
    return fail_with;
  }
};

}  // namespace knit::testing
