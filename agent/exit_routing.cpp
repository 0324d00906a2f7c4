#include "agent/exit_routing.hpp"

#include <net/if.h>


#include "base/key_file.hpp"
#include "base/log.hpp"
#include "net/sysctl.hpp"

namespace knit::agent {

namespace {

constexpr std::size_t kMaxFileSize = 16 * 1024;

bool gone(std::error_code ec) {
  return ec == std::errc::no_such_file_or_directory || ec == std::errc::no_such_process ||
         ec == std::errc::no_such_device;
}

ExitHostState read_host(const std::string& tun_name) {
  ExitHostState host;
  host.tun_ifindex = static_cast<int>(::if_nametoindex(tun_name.c_str()));
  std::error_code ec;
  host.ipv6 = std::filesystem::exists("/proc/sys/net/ipv6", ec);
  host.rp_filter_all = net::read_sysctl("net/ipv4/conf/all/rp_filter");
  for (const auto& entry : std::filesystem::directory_iterator("/proc/sys/net/ipv4/conf", ec)) {
    const std::string name = entry.path().filename().string();
    if (name == "all" || name == "default" || name == "lo" || name == tun_name) continue;
    if (auto value = net::read_sysctl("net/ipv4/conf/" + name + "/rp_filter"))
      host.rp_filter_interfaces.emplace_back(name, *value);
  }
  return host;
}

std::error_code carry_out(net::PolicyRouting& routing, const ExitStep& step, bool apply) {
  switch (step.kind) {
    case ExitStep::Kind::sysctl: return net::write_sysctl(step.key, apply ? step.value : step.previous);
    case ExitStep::Kind::route:
      return apply ? routing.add_default_route(kExitTable, step.ifindex, step.family)
                   : routing.delete_default_route(kExitTable, step.ifindex, step.family);
    case ExitStep::Kind::rule: return apply ? routing.add_rule(step.rule) : routing.delete_rule(step.rule);
  }
  return {};
}

}  // namespace

std::vector<std::string> ExitRouting::route_default(std::optional<bool> allow_lan) {
  if (allow_lan == mode_) return {};
  std::vector<std::string> failures = undo();
  mode_ = allow_lan;
  if (!allow_lan) return failures;
  try {
    net::PolicyRouting routing;
    const ExitHostState host = read_host(tun_name_);
    if (host.tun_ifindex == 0) {
      failures.push_back("no interface " + tun_name_ + ": the default route stays on the underlay");
      return failures;
    }
    const std::vector<ExitStep> steps = plan_exit(host, *allow_lan);
    record_sysctls(steps);
    for (const ExitStep& step : steps) {
      const std::error_code ec = carry_out(routing, step, true);
      if (ec && ec != std::errc::file_exists) {
        // The IPv6 half on a host without IPv6 routing is no reason to give up the IPv4 half.
        failures.push_back("cannot " + step.to_string() + ": " + ec.message());
        if (step.family == 6 && step.kind != ExitStep::Kind::sysctl) continue;
        if (step.kind == ExitStep::Kind::sysctl) continue;
        for (auto& line : undo()) failures.push_back(line);
        return failures;
      }
      applied_.push_back(step);
      log(LogLevel::debug, "knitd", "exit node: ", step.to_string());
    }
  } catch (const std::exception& e) {
    failures.push_back(std::string("exit node: ") + e.what());
  }
  return failures;
}

std::vector<std::string> ExitRouting::undo() {
  std::vector<std::string> failures;
  if (applied_.empty()) return failures;
  try {
    net::PolicyRouting routing;
    for (const ExitStep& step : plan_undo(applied_)) {
      const std::error_code ec = carry_out(routing, step, false);
      if (ec && !gone(ec)) failures.push_back("cannot undo " + step.to_string() + ": " + ec.message());
    }
  } catch (const std::exception& e) {
    failures.push_back(std::string("exit node: ") + e.what());
  }
  applied_.clear();
  std::error_code ignored;
  std::filesystem::remove(file_, ignored);
  return failures;
}

void ExitRouting::record_sysctls(const std::vector<ExitStep>& steps) {
  std::vector<SysctlRecord> records;
  for (const ExitStep& step : steps)
    if (step.kind == ExitStep::Kind::sysctl) records.push_back({step.key, step.value, step.previous});
  if (records.empty()) return;
  const std::string text = encode_exit_state(records);
  const ByteSpan bytes(reinterpret_cast<const std::uint8_t*>(text.data()), text.size());
  if (auto failed = write_private_file(file_, bytes, /*replace=*/true))
    log(LogLevel::warn, "knitd", "exit node: cannot record the sysctls it changes (", failed->message,
        "): a crash would leave them changed");
}

std::vector<SysctlRecord> ExitRouting::recorded_sysctls() const {
  auto text = read_small_file(file_, kMaxFileSize);
  return text ? parse_exit_state(*text) : std::vector<SysctlRecord>{};
}

std::vector<std::string> ExitRouting::remove_stale() {
  std::vector<std::string> failures;
  std::size_t removed = 0;
  try {
    net::PolicyRouting routing;
    for (std::uint8_t family : {std::uint8_t{4}, std::uint8_t{6}}) {
      std::vector<net::Rule> found;
      if (routing.rules(found, family)) continue;  // no IPv6 on this host
      for (const net::Rule& rule : stale_exit_rules(found)) {
        if (auto ec = routing.delete_rule(rule); ec && !gone(ec))
          failures.push_back("cannot remove a stale rule (" + rule.to_string() + "): " + ec.message());
        else ++removed;
      }
      std::size_t count = 0;
      if (!routing.count_routes(kExitTable, count, family) && count > 0) {
        if (!routing.delete_default_route(kExitTable, 0, family)) ++removed;
      }
    }
  } catch (const std::exception& e) {
    failures.push_back(std::string("exit node: ") + e.what());
  }
  const std::vector<SysctlRecord> recorded = recorded_sysctls();
  std::vector<std::optional<std::string>> current;
  for (const SysctlRecord& r : recorded) current.push_back(net::read_sysctl(r.key));
  for (const SysctlRecord& r : sysctls_to_restore(recorded, current)) {
    if (auto ec = net::write_sysctl(r.key, r.previous)) failures.push_back("cannot restore " + r.key + ": " + ec.message());
    else ++removed;
  }
  std::error_code ignored;
  std::filesystem::remove(file_, ignored);
  if (removed > 0) log(LogLevel::info, "knitd", "exit node: removed ", removed, " host changes left by an earlier run");
  return failures;
}

}  // namespace knit::agent
