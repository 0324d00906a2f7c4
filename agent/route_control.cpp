#include "agent/route_control.hpp"

#include <algorithm>
#include <type_traits>

#include "agent/carrier_status.hpp"
#include "base/log.hpp"
#include "control/constants.hpp"

namespace knit::agent {

namespace {

localapi::RouteSettingsStatus status_of(const RouteSettings& settings) {
  return localapi::RouteSettingsStatus{settings.advertise, settings.exit_node, settings.accept, 0, std::nullopt,
                                       settings.use_exit, settings.exit_allow_lan, {}};
}

}  // namespace

void RouteControl::restore() {
  RouteSettings settings;
  try {
    settings = store_.load();
  } catch (const std::exception& e) {
    log(LogLevel::error, "knitd", e.what(), ": advertising no routes and accepting none");
    return;
  }
  membership_.set_route_settings(settings);
  if (!settings.advertise.empty() || settings.exit_node || settings.accept)
    log(LogLevel::info, "knitd", settings.advertise.size(), " routes advertised",
        settings.exit_node ? ", exit node" : "", settings.accept ? ", accepting routes" : "");
}

void RouteControl::handle_request(localapi::ControlRequest request, Reply reply) {
  if (std::holds_alternative<localapi::StatusRequest>(request)) {
    return next_.handle_request(std::move(request), [this, reply](localapi::ControlResponse response) {
      if (auto* answer = std::get_if<localapi::StatusReply>(&response)) add_status(answer->status);
      reply(std::move(response));
    });
  }
  if (auto* routes = std::get_if<localapi::RoutesRequest>(&request)) return reply(change(*routes));
  next_.handle_request(std::move(request), std::move(reply));
}

localapi::ControlResponse RouteControl::change(const localapi::RoutesRequest& request) {
  RouteSettings settings = membership_.route_settings();
  if (request.advertise_routes) {
    std::vector<IpPrefix> routes;
    for (const IpPrefix& p : *request.advertise_routes)
      if (std::find(routes.begin(), routes.end(), p) == routes.end()) routes.push_back(p);
    if (routes.size() > control::kMaxRoutes)
      return localapi::ErrorReply{"at most " + std::to_string(control::kMaxRoutes) + " routes"};
    std::vector<IpPrefix> mesh;
    if (const auto& record = membership_.mesh()) mesh = {record->ipv4_prefix, record->ipv6_prefix};
    if (std::string why = advertise_problem(routes, mesh, membership_.coordinator_ips()); !why.empty())
      return localapi::ErrorReply{"cannot advertise routes: " + why};
    settings.advertise = std::move(routes);
  }
  if (request.advertise_exit_node) settings.exit_node = *request.advertise_exit_node;
  if (request.accept_routes) settings.accept = *request.accept_routes;
  if (request.snat_routes) settings.snat = *request.snat_routes;
  if (request.exit_node_allow_lan) settings.exit_allow_lan = *request.exit_node_allow_lan;
  if (request.exit_node) {
    if (std::string why = exit_problem(*request.exit_node); !why.empty()) return localapi::ErrorReply{why};
    settings.use_exit = *request.exit_node;
  }
  membership_.set_route_settings(settings);
  try {
    store_.save(settings);
  } catch (const std::exception& e) {
    return localapi::ErrorReply{std::string("applied, but not saved (lost when knitd restarts): ") + e.what()};
  }
  return localapi::RoutesReply{status_of(settings)};
}

std::string RouteControl::exit_problem(const std::string& wanted) const {
  if (wanted.empty()) return {};
  // Before the first peer map (not joined, or still connecting) the choice is kept and shown
  // as pending ("unknown") until a map names the node.
  if (!membership_.joined() || membership_.peers().version == 0) return {};
  const control::NodeKey self = membership_.identity() ? membership_.identity()->node.public_key : control::NodeKey{};
  if (const auto& record = membership_.mesh();
      record && (wanted == record->name || IpAddress::parse(wanted) == std::optional<IpAddress>(record->ipv4) ||
                 IpAddress::parse(wanted) == std::optional<IpAddress>(record->ipv6)))
    return "cannot use this node as its own exit node";
  const ExitChoice choice = choose_exit(membership_.peers().peers, self, wanted);
  if (choice.state != ExitState::unknown && choice.state != ExitState::not_exit) return {};
  std::string offered;
  for (const control::PeerInfo& peer : membership_.peers().peers)
    if (offers_exit(peer) && peer.node_key != self) offered += (offered.empty() ? "" : ", ") + peer.name;
  return (choice.state == ExitState::unknown ? "no node " + wanted + " in the mesh"
                                             : choice.name + " is not an approved exit node") +
         (offered.empty() ? std::string(" (there is none: `knit set --advertise-exit-node` on one, then "
                                        "`knit-coordinator routes approve NODE exit`)")
                          : " (approved exit nodes: " + offered + ")");
}

void RouteControl::add_status(localapi::StatusReport& status) const {
  status.self.routes = status_of(membership_.route_settings());
  if (const RouteSettings& settings = membership_.route_settings(); !settings.use_exit.empty()) {
    const ExitChoice& choice = membership_.exit_choice();
    localapi::ExitNodeStatus exit;
    exit.name = choice.name.empty() ? settings.use_exit : choice.name;
    exit.ip = choice.ip;
    exit.active = choice.active();
    exit.allow_lan = settings.exit_allow_lan;
    exit.state = std::string(to_string(membership_.joined() ? choice.state : ExitState::unknown));
    status.self.exit_node = exit;
  }
  status.self.routes->dropped_source = membership_.device().stats().rx_disallowed_source;
  const RouteCarriers& carriers = membership_.route_carriers();
  if (membership_.route_settings().accept && membership_.joined()) {
    const control::NodeKey self = membership_.identity() ? membership_.identity()->node.public_key : control::NodeKey{};
    const CarrierWatch& watch = membership_.carrier_watch();
    status.self.routes->carriers = route_carrier_status(membership_.peers().peers, self, membership_.local_addresses(),
                                                        carriers, watch.health(), watch.now());
  }
  for (localapi::PeerStatus& peer : status.peers) {
    for (const control::PeerInfo& info : membership_.peers().peers) {
      if (info.node_key != peer.node_key) continue;
      peer.routes = info.routes;
      peer.routes_accepted = !routes_carried_by(carriers, info.node_key).empty();
      break;
    }
  }
}

}  // namespace knit::agent
