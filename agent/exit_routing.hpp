// ExitRouting: carries out exit_plan.hpp on this host (rtnetlink and /proc/sys) and undoes it:
// when the exit node is unset or goes away, when knitd exits, and, for what a crashed run left
// behind, when knitd starts (remove_stale). Sysctls it changes are recorded first in the state
// directory (exit-host.json, 0600) so that a crashed run's can be put back.
#pragma once

#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "agent/exit_plan.hpp"
#include "agent/mesh_membership.hpp"

namespace knit::agent {

inline constexpr const char* kExitHostFile = "exit-host.json";

class ExitRouting final : public ExitHost {
 public:
  ExitRouting(std::filesystem::path state_dir, std::string tun_name)
      : file_(std::move(state_dir) / kExitHostFile), tun_name_(std::move(tun_name)) {}

  // Removes knitd's rules, its table's routes and restores recorded sysctls. One line per failure.
  std::vector<std::string> remove_stale();
  std::vector<std::string> route_default(std::optional<bool> allow_lan) override;
  std::vector<std::string> clear() { return route_default(std::nullopt); }
  const std::vector<ExitStep>& applied() const { return applied_; }

 private:
  std::vector<std::string> undo();
  void record_sysctls(const std::vector<ExitStep>& steps);
  std::vector<SysctlRecord> recorded_sysctls() const;

  std::filesystem::path file_;
  std::string tun_name_;
  std::optional<bool> mode_;  // the allow-lan setting in force; nullopt: not routing
  std::vector<ExitStep> applied_;
};

}  // namespace knit::agent
