// Subnet routes and exit nodes as the coordinator keeps them: what each node advertises
// (`knit up/set --advertise-routes`, `--advertise-exit-node`: control::RouteAdvertise) and what
// an admin approved (`knit-coordinator routes approve|reject`) or its join token approved in
// advance (`token create --auto-approve 10.0.0.0/8,exit`). Only routes both advertised and
// approved reach the peer map: a node cannot take someone else's subnet by advertising it. An
// exit node's routes travel as 0.0.0.0/0 and ::/0.
//
// Kept in the settings table (both stores; no schema change), read and written in one
// transaction (Store::update_setting):
//
//   routes                 {"<node key>": {"advertised": ["10.1.0.0/24"], "exit": false,
//                                          "approved": ["10.1.0.0/24"], "exit_approved": false}}
//   auto_approve/<token>   "10.0.0.0/8,exit"
//
// Entries of removed nodes are dropped at the next write. What was stored is parsed as hostile
// (a bad entry is skipped).
#pragma once

#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/ip.hpp"
#include "control/messages.hpp"
#include "control/route_rules.hpp"
#include "coordinator/records.hpp"
#include "coordinator/result.hpp"

namespace knit::coordinator {

class Store;

inline constexpr std::string_view kRoutesKey = "routes";
std::string auto_approve_key(std::string_view token_id);

struct NodeRoutes {
  std::vector<IpPrefix> advertised;
  bool exit_advertised = false;
  std::vector<IpPrefix> approved;
  bool exit_approved = false;
  friend bool operator==(const NodeRoutes&, const NodeRoutes&) = default;
};

class RouteBook {
 public:
  static RouteBook parse(std::string_view stored);
  std::string encode() const;

  const NodeRoutes* find(const wg::PublicKey& node) const;
  const std::map<wg::PublicKey, NodeRoutes>& nodes() const { return nodes_; }

  // The node's new advertisement. Routes newly advertised that lie inside one of auto_approve's
  // prefixes are approved (and the exit, when auto_approve has it). Routes `route_problem`
  // refuses are left out. Returns whether what the peer map shows of the node changed.
  bool advertise(const wg::PublicKey& node, const control::RouteAdvertise& ad,
                 const control::RouteList& auto_approve, const std::vector<IpPrefix>& mesh);

  // An admin's decision on an advertised route (nullopt: the exit). Returns an empty string on
  // success, else why not (not advertised).
  std::string approve(const wg::PublicKey& node, const std::optional<IpPrefix>& route);
  std::string reject(const wg::PublicKey& node, const std::optional<IpPrefix>& route);

  // What the peer map carries for the node: advertised and approved, the exit's default routes.
  std::vector<IpPrefix> published(const wg::PublicKey& node) const;

  // Drops nodes not in `present`.
  void keep_only(const std::vector<wg::PublicKey>& present);

 private:
  std::map<wg::PublicKey, NodeRoutes> nodes_;
};

// ---- on a Store ----
Result<RouteBook> load_routes(Store& store);
// What a token approves in advance (empty when nothing).
Result<control::RouteList> load_auto_approve(Store& store, std::string_view token_id);
Result<void> save_auto_approve(Store& store, std::string_view token_id, const control::RouteList& list);
// A node's advertisement, with its token's auto-approval; notes a change of the node when its
// published routes changed.
Result<void> store_advertisement(Store& store, const Node& node, const control::RouteAdvertise& ad,
                                 const std::vector<IpPrefix>& mesh);
// approve/reject by an admin; Errc::invalid with the reason (not advertised), noted as a change.
Result<void> decide_route(Store& store, const Node& node, const std::optional<IpPrefix>& route, bool approve);

}  // namespace knit::coordinator
