// The server's side of subnet routes and exit nodes (routes.hpp): an agent's advertisement is
// stored with its token's auto-approval; the peer map carries only approved routes.
#include "base/log.hpp"
#include "coordinator/control_view.hpp"
#include "coordinator/server.hpp"

namespace knit::coordinator {

namespace {
constexpr const char* kRoutesLog = "coordinator";
}

void Server::load_routes() {
  auto book = coordinator::load_routes(store_);
  if (!book) {
    log(LogLevel::warn, kRoutesLog, "cannot read the routes: ", book.error().message);
    return;
  }
  routes_ = std::move(*book);
}

control::PeerInfo Server::routed_peer_info(const Node& node) const {
  control::PeerInfo peer = peer_info(node);
  peer.routes = routes_.published(node.node_key);
  return peer;
}

void Server::on_route_advertise(AgentSession& session, const control::RouteAdvertise& ad) {
  if (!is_owner(session)) return;
  auto node = store_.find_node(session.node_key());
  if (!node || !*node) return;
  if (auto r = store_advertisement(store_, **node, ad, {mesh_.ipv4_prefix, mesh_.ipv6_prefix}); !r) {
    log(LogLevel::warn, kRoutesLog, "cannot store the routes of ", (*node)->name, ": ", r.error().message);
    return;
  }
  // This coordinator's own change is not fed back to it: read the node again now.
  refresh_node(session.node_key());
}

}  // namespace knit::coordinator
