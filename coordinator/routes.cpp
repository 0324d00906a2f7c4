#include "coordinator/routes.hpp"

#include <algorithm>
#include <nlohmann/json.hpp>

#include "base/bytes.hpp"
#include "coordinator/store.hpp"

namespace knit::coordinator {

namespace {

using Json = nlohmann::json;

bool has(const std::vector<IpPrefix>& list, const IpPrefix& p) {
  return std::find(list.begin(), list.end(), p) != list.end();
}

// Prefixes of a stored list; anything that is not one is skipped.
std::vector<IpPrefix> prefixes_of(const Json& v) {
  std::vector<IpPrefix> out;
  if (!v.is_array()) return out;
  for (const Json& item : v) {
    if (!item.is_string() || out.size() >= control::kMaxRoutes) continue;
    std::string error;
    auto list = control::parse_route_list(item.get_ref<const std::string&>(), false, error);
    if (list && list->routes.size() == 1 && !has(out, list->routes[0])) out.push_back(list->routes[0]);
  }
  return out;
}

Json prefixes_json(const std::vector<IpPrefix>& list) {
  Json out = Json::array();
  for (const IpPrefix& p : list) out.push_back(p.to_string());
  return out;
}

bool flag(const Json& object, const char* name) {
  auto it = object.find(name);
  return it != object.end() && it->is_boolean() && it->get<bool>();
}

std::string_view what(const std::optional<IpPrefix>& route, std::string& buffer) {
  buffer = route ? route->to_string() : std::string("the exit node");
  return buffer;
}

}  // namespace

std::string auto_approve_key(std::string_view token_id) { return "auto_approve/" + std::string(token_id); }

RouteBook RouteBook::parse(std::string_view stored) {
  RouteBook book;
  const Json root = Json::parse(stored.begin(), stored.end(), nullptr, /*allow_exceptions=*/false);
  if (!root.is_object()) return book;
  for (const auto& [key_text, entry] : root.items()) {
    const auto bytes = from_base64(key_text);
    if (!bytes || bytes->size() != 32 || !entry.is_object()) continue;
    wg::PublicKey key{};
    std::copy(bytes->begin(), bytes->end(), key.begin());
    NodeRoutes routes;
    if (auto it = entry.find("advertised"); it != entry.end()) routes.advertised = prefixes_of(*it);
    if (auto it = entry.find("approved"); it != entry.end()) routes.approved = prefixes_of(*it);
    routes.exit_advertised = flag(entry, "exit");
    routes.exit_approved = flag(entry, "exit_approved");
    book.nodes_[key] = std::move(routes);
  }
  return book;
}

std::string RouteBook::encode() const {
  Json root = Json::object();
  for (const auto& [key, routes] : nodes_) {
    root[to_base64(key)] = Json{{"advertised", prefixes_json(routes.advertised)},
                                {"exit", routes.exit_advertised},
                                {"approved", prefixes_json(routes.approved)},
                                {"exit_approved", routes.exit_approved}};
  }
  return root.dump();
}

const NodeRoutes* RouteBook::find(const wg::PublicKey& node) const {
  auto it = nodes_.find(node);
  return it == nodes_.end() ? nullptr : &it->second;
}

bool RouteBook::advertise(const wg::PublicKey& node, const control::RouteAdvertise& ad,
                          const control::RouteList& auto_approve, const std::vector<IpPrefix>& mesh) {
  const std::vector<IpPrefix> before = published(node);
  NodeRoutes& routes = nodes_[node];
  std::vector<IpPrefix> advertised;
  for (const IpPrefix& p : ad.routes) {
    if (advertised.size() >= control::kMaxRoutes || has(advertised, p)) continue;
    if (!control::route_problem(p, mesh).empty()) continue;
    advertised.push_back(p);
    if (has(routes.advertised, p) || has(routes.approved, p)) continue;
    const bool covered = std::any_of(auto_approve.routes.begin(), auto_approve.routes.end(),
                                     [&](const IpPrefix& a) { return a.length <= p.length && control::prefix_holds(a, p.address); });
    if (covered) routes.approved.push_back(p);
  }
  if (ad.exit_node && !routes.exit_advertised && auto_approve.exit) routes.exit_approved = true;
  routes.advertised = std::move(advertised);
  routes.exit_advertised = ad.exit_node;
  return published(node) != before;
}

std::string RouteBook::approve(const wg::PublicKey& node, const std::optional<IpPrefix>& route) {
  std::string buffer;
  auto it = nodes_.find(node);
  if (route) {
    if (it == nodes_.end() || !has(it->second.advertised, *route))
      return "the node does not advertise " + std::string(what(route, buffer)) + " (`routes list` shows what it does)";
    if (!has(it->second.approved, *route)) it->second.approved.push_back(*route);
    return {};
  }
  if (it == nodes_.end() || !it->second.exit_advertised)
    return "the node does not advertise itself as an exit node (`knit set --advertise-exit-node` on it)";
  it->second.exit_approved = true;
  return {};
}

std::string RouteBook::reject(const wg::PublicKey& node, const std::optional<IpPrefix>& route) {
  std::string buffer;
  auto it = nodes_.find(node);
  const bool known = it != nodes_.end() &&
                     (route ? has(it->second.advertised, *route) || has(it->second.approved, *route)
                            : it->second.exit_advertised || it->second.exit_approved);
  if (!known) return "the node neither advertises nor has approved " + std::string(what(route, buffer));
  if (route) std::erase(it->second.approved, *route);
  else it->second.exit_approved = false;
  return {};
}

std::vector<IpPrefix> RouteBook::published(const wg::PublicKey& node) const {
  std::vector<IpPrefix> out;
  const NodeRoutes* routes = find(node);
  if (routes == nullptr) return out;
  for (const IpPrefix& p : routes->advertised)
    if (has(routes->approved, p)) out.push_back(p);
  if (routes->exit_advertised && routes->exit_approved) {
    out.push_back(control::default_route_v4());
    out.push_back(control::default_route_v6());
  }
  std::sort(out.begin(), out.end());
  return out;
}

void RouteBook::keep_only(const std::vector<wg::PublicKey>& present) {
  std::erase_if(nodes_, [&](const auto& entry) {
    return std::find(present.begin(), present.end(), entry.first) == present.end();
  });
}

// ---- on a Store ----

Result<RouteBook> load_routes(Store& store) {
  auto text = store.read_setting(kRoutesKey);
  if (!text) return text.error();
  return *text ? RouteBook::parse(**text) : RouteBook{};
}

Result<control::RouteList> load_auto_approve(Store& store, std::string_view token_id) {
  if (token_id.empty()) return control::RouteList{};
  auto text = store.read_setting(auto_approve_key(token_id));
  if (!text) return text.error();
  std::string error;
  auto list = *text ? control::parse_route_list(**text, true, error) : std::nullopt;
  return list.value_or(control::RouteList{});
}

Result<void> save_auto_approve(Store& store, std::string_view token_id, const control::RouteList& list) {
  return store.update_setting(auto_approve_key(token_id),
                              [&](const std::optional<std::string>&, std::vector<wg::PublicKey>&)
                                  -> Result<std::optional<std::string>> { return std::optional<std::string>(control::format_route_list(list)); });
}

Result<void> store_advertisement(Store& store, const Node& node, const control::RouteAdvertise& ad,
                                 const std::vector<IpPrefix>& mesh) {
  // Most nodes route nothing and say so on every connect: a plain read, no write transaction
  // (and no table lock on PostgreSQL) for them.
  if (ad.routes.empty() && !ad.exit_node) {
    auto book = load_routes(store);
    if (!book) return book.error();
    if (book->find(node.node_key) == nullptr) return Ok{};
  }
  auto auto_approve = load_auto_approve(store, node.token_id);
  if (!auto_approve) return auto_approve.error();
  return store.update_setting(
      kRoutesKey,
      [&](const std::optional<std::string>& old,
          std::vector<wg::PublicKey>& changed) -> Result<std::optional<std::string>> {
        RouteBook book = old ? RouteBook::parse(*old) : RouteBook{};
        const NodeRoutes* before = book.find(node.node_key);
        // Most nodes route nothing and say so on every connect: no write for them.
        if (before == nullptr && ad.routes.empty() && !ad.exit_node) return std::optional<std::string>();
        const NodeRoutes copy = before != nullptr ? *before : NodeRoutes{};
        const bool visible = book.advertise(node.node_key, ad, *auto_approve, mesh);
        if (before != nullptr && *book.find(node.node_key) == copy) return std::optional<std::string>();
        if (visible) changed.push_back(node.node_key);
        return std::optional<std::string>(book.encode());
      });
}

Result<void> decide_route(Store& store, const Node& node, const std::optional<IpPrefix>& route, bool approve) {
  auto nodes = store.list_nodes();
  if (!nodes) return nodes.error();
  std::vector<wg::PublicKey> present;
  for (const Node& n : *nodes) present.push_back(n.node_key);
  return store.update_setting(
      kRoutesKey,
      [&](const std::optional<std::string>& old,
          std::vector<wg::PublicKey>& changed) -> Result<std::optional<std::string>> {
        RouteBook book = old ? RouteBook::parse(*old) : RouteBook{};
        book.keep_only(present);
        const std::vector<IpPrefix> before = book.published(node.node_key);
        std::string why = approve ? book.approve(node.node_key, route) : book.reject(node.node_key, route);
        if (!why.empty()) return Error{Errc::invalid, node.name + ": " + why};
        if (book.published(node.node_key) != before) changed.push_back(node.node_key);
        return std::optional<std::string>(book.encode());
      });
}

}  // namespace knit::coordinator
