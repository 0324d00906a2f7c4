#include "agent/filter_control.hpp"

#include <type_traits>

#include "base/log.hpp"

namespace knit::agent {

void FilterControl::restore() {
  FilterSettings settings;
  try {
    settings = store_.load();
  } catch (const std::exception& e) {
    log(LogLevel::error, "knitd", e.what(), ": starting with shields down and no port forwards");
    return;
  }
  filter_.set_shields_up(settings.shields_up);
  for (const localapi::ForwardRule& rule : settings.forwards) {
    if (std::string why = filter_.add_forward(rule); !why.empty())
      log(LogLevel::warn, "knitd", "port forward ", to_string(rule.protocol), "/", rule.mesh_port, " -> ",
          rule.target.to_string(), " not restored: ", why);
  }
  if (settings.shields_up || !settings.forwards.empty())
    log(LogLevel::info, "knitd", "shields ", settings.shields_up ? "up" : "down", ", ",
        filter_.forward_rules().size(), " port forwards");
}

localapi::FilterStatus FilterControl::status() const {
  const PolicyCounters p = filter_.policy().counters();
  localapi::PolicyStatus policy{p.in_force, p.version, {}, p.denied, p.cut, p.flows, p.rejected_updates};
  for (const PolicyRuleCounters& r : p.rules) policy.rules.push_back({r.name, r.accepted_flows, r.accepted_packets});
  return localapi::FilterStatus{filter_.shields_up(), filter_.forwards(), filter_.counters(), std::move(policy)};
}

std::string FilterControl::save() {
  try {
    store_.save(FilterSettings{filter_.shields_up(), filter_.forward_rules()});
  } catch (const std::exception& e) {
    return std::string("applied, but not saved (lost when knitd restarts): ") + e.what();
  }
  return {};
}

void FilterControl::handle_request(localapi::ControlRequest request, Reply reply) {
  if (std::holds_alternative<localapi::StatusRequest>(request)) {
    return next_.handle_request(std::move(request), [this, reply](localapi::ControlResponse response) {
      if (auto* answer = std::get_if<localapi::StatusReply>(&response)) answer->status.self.filter = status();
      reply(std::move(response));
    });
  }
  std::visit(
      [&](auto& r) {
        using T = std::decay_t<decltype(r)>;
        if constexpr (std::is_same_v<T, localapi::SetRequest>) reply(set(r));
        else if constexpr (std::is_same_v<T, localapi::ForwardAddRequest>) reply(forward_add(r));
        else if constexpr (std::is_same_v<T, localapi::ForwardRemoveRequest>) reply(forward_remove(r));
        else if constexpr (std::is_same_v<T, localapi::ForwardListRequest>) reply(localapi::ForwardsReply{filter_.forwards()});
        else if constexpr (std::is_same_v<T, localapi::PolicyDebugRequest>) reply(localapi::PolicyDebugReply{filter_.policy().describe()});
        else next_.handle_request(std::move(request), std::move(reply));
      },
      request);
}

localapi::ControlResponse FilterControl::set(const localapi::SetRequest& request) {
  if (request.shields_up && *request.shields_up != filter_.shields_up()) {
    filter_.set_shields_up(*request.shields_up);
    log(LogLevel::info, "knitd", "shields ", *request.shields_up ? "up" : "down");
    if (std::string failed = save(); !failed.empty()) return localapi::ErrorReply{failed};
  }
  localapi::SetReply reply;
  reply.shields_up = filter_.shields_up();
  return reply;
}

localapi::ControlResponse FilterControl::forward_add(const localapi::ForwardAddRequest& request) {
  if (filter_.forward_rules().size() >= kMaxForwards)
    return localapi::ErrorReply{"too many port forwards (" + std::to_string(kMaxForwards) + ")"};
  if (std::string why = filter_.add_forward(request.rule); !why.empty()) return localapi::ErrorReply{why};
  log(LogLevel::info, "knitd", "port forward ", to_string(request.rule.protocol), "/", request.rule.mesh_port,
      " -> ", request.rule.target.to_string());
  if (std::string failed = save(); !failed.empty()) return localapi::ErrorReply{failed};
  return localapi::ForwardsReply{filter_.forwards()};
}

localapi::ControlResponse FilterControl::forward_remove(const localapi::ForwardRemoveRequest& request) {
  if (!filter_.remove_forward(request.protocol, request.mesh_port)) {
    return localapi::ErrorReply{"no " + std::string(to_string(request.protocol)) + " forward on mesh port " +
                      std::to_string(request.mesh_port) + ": `knit forward list` shows them"};
  }
  log(LogLevel::info, "knitd", "port forward ", to_string(request.protocol), "/", request.mesh_port, " removed");
  if (std::string failed = save(); !failed.empty()) return localapi::ErrorReply{failed};
  return localapi::ForwardsReply{filter_.forwards()};
}

}  // namespace knit::agent
