// knit-coordinator routes list [--json] | routes approve|reject NODE CIDR|exit (routes.hpp).
#include <nlohmann/json.hpp>

#include <iomanip>
#include <memory>
#include <ostream>
#include <sstream>

#include "coordinator/admin_cli.hpp"
#include "coordinator/routes.hpp"
#include "coordinator/state_dir.hpp"
#include "coordinator/store.hpp"

namespace knit::coordinator {

namespace {

std::unique_ptr<Store> open_mesh(const CliGlobals& globals) {
  const StoreLocation location = store_location(globals);
  if (!has_state(location)) throw CliError("no mesh here: check --state-dir and --store");
  auto store = open_store(location);
  if (!store) throw CliError(store.error().message);
  return std::move(*store);
}

std::string joined(const std::vector<IpPrefix>& list) {
  std::string out;
  for (const IpPrefix& p : list) out += (out.empty() ? "" : ",") + p.to_string();
  return out.empty() ? "-" : out;
}

std::vector<IpPrefix> pending(const NodeRoutes& r) {
  std::vector<IpPrefix> out;
  for (const IpPrefix& p : r.advertised)
    if (std::find(r.approved.begin(), r.approved.end(), p) == r.approved.end()) out.push_back(p);
  return out;
}

std::string routes_table(const std::vector<Node>& nodes, const RouteBook& book) {
  std::ostringstream out;
  out << std::left << std::setw(20) << "NODE" << std::setw(36) << "APPROVED" << std::setw(36)
      << "AWAITING APPROVAL" << "EXIT\n";
  std::size_t shown = 0;
  for (const Node& node : nodes) {
    const NodeRoutes* r = book.find(node.node_key);
    if (r == nullptr || (r->advertised.empty() && !r->exit_advertised)) continue;
    std::vector<IpPrefix> approved;
    for (const IpPrefix& p : r->advertised)
      if (std::find(r->approved.begin(), r->approved.end(), p) != r->approved.end()) approved.push_back(p);
    const std::string exit = !r->exit_advertised ? "-" : r->exit_approved ? "approved" : "awaiting approval";
    out << std::setw(20) << node.name << std::setw(36) << joined(approved) << std::setw(36)
        << joined(pending(*r)) << exit << "\n";
    ++shown;
  }
  if (shown == 0) return "No node advertises routes (`knit set --advertise-routes CIDR` on a router).\n";
  return out.str();
}

std::string routes_json(const std::vector<Node>& nodes, const RouteBook& book) {
  nlohmann::json out = nlohmann::json::array();
  for (const Node& node : nodes) {
    const NodeRoutes* r = book.find(node.node_key);
    if (r == nullptr || (r->advertised.empty() && !r->exit_advertised)) continue;
    auto list = [](const std::vector<IpPrefix>& v) {
      nlohmann::json a = nlohmann::json::array();
      for (const IpPrefix& p : v) a.push_back(p.to_string());
      return a;
    };
    nlohmann::json published = nlohmann::json::array();
    for (const IpPrefix& p : book.published(node.node_key)) published.push_back(p.to_string());
    out.push_back({{"node", node.name},
                   {"ipv4", node.ipv4.to_string()},
                   {"advertised", list(r->advertised)},
                   {"approved", list(r->approved)},
                   {"pending", list(pending(*r))},
                   {"exit_node", r->exit_advertised},
                   {"exit_approved", r->exit_approved},
                   {"published", published}});
  }
  return out.dump(2) + "\n";
}

// "10.1.0.0/24" or "exit" -> the route (nullopt: the exit); CliError otherwise.
std::optional<IpPrefix> route_argument(const std::string& text) {
  if (text == "exit") return std::nullopt;
  std::string error;
  auto list = control::parse_route_list(text, false, error);
  if (!list || list->routes.size() != 1)
    throw CliError(error.empty() ? "'" + text + "' is not one CIDR prefix (e.g. 10.1.0.0/24) or exit" : error);
  return list->routes[0];
}

void add_decision(CLI::App* routes, const char* name, bool approve, const CliGlobals& globals,
                  CliContext& ctx, CliAction& action) {
  auto node = std::make_shared<std::string>();
  auto route = std::make_shared<std::string>();
  CLI::App* cmd = routes->add_subcommand(
      name, approve ? "approve a route a node advertises (it reaches the peer map)"
                    : "withdraw a route's approval (it leaves the peer map)");
  cmd->add_option("NODE", *node, "the node's name, as nodes list shows it")->required();
  cmd->add_option("ROUTE", *route, "a CIDR prefix it advertises, or exit")->required();
  cmd->callback([&globals, &ctx, &action, node, route, approve] {
    action = [&globals, &ctx, node, route, approve] {
      const std::optional<IpPrefix> which = route_argument(*route);
      auto store = open_mesh(globals);
      auto found = store->find_node_by_name(*node);
      if (!found) throw CliError(found.error().message);
      if (!*found) throw CliError("no node named " + *node + " (`nodes list` shows them)");
      if (auto r = decide_route(*store, **found, which, approve); !r) throw CliError(r.error().message);
      ctx.out << (approve ? "Approved " : "Rejected ") << (which ? which->to_string() : "the exit node")
              << " for " << (*found)->name << ".\n";
      return 0;
    };
  });
}

}  // namespace

void add_route_commands(CLI::App& app, const CliGlobals& globals, CliContext& ctx, CliAction& action) {
  CLI::App* routes = app.add_subcommand("routes", "subnet routes and exit nodes: list, approve, reject");
  routes->require_subcommand(1);
  auto json = std::make_shared<bool>(false);
  CLI::App* list = routes->add_subcommand("list", "what each node advertises and what is approved");
  list->add_flag("--json", *json, "print JSON instead of a table");
  list->callback([&globals, &ctx, &action, json] {
    action = [&globals, &ctx, json] {
      auto store = open_mesh(globals);
      auto nodes = store->list_nodes();
      if (!nodes) throw CliError(nodes.error().message);
      auto book = load_routes(*store);
      if (!book) throw CliError(book.error().message);
      ctx.out << (*json ? routes_json(*nodes, *book) : routes_table(*nodes, *book));
      return 0;
    };
  });
  add_decision(routes, "approve", true, globals, ctx, action);
  add_decision(routes, "reject", false, globals, ctx, action);
}

}  // namespace knit::coordinator
