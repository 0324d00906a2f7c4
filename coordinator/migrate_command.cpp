#include "coordinator/migrate_command.hpp"

#include <memory>
#include <ostream>

#include "coordinator/state_dir.hpp"

namespace knit::coordinator {

namespace {

struct MigrateOptions {
  std::string from;
  std::string to;
};

// What a node must keep across the move.
bool same_node(const Node& a, const Node& b) {
  return a.node_key == b.node_key && a.disco_key == b.disco_key && a.name == b.name &&
         a.hostname == b.hostname && a.ipv4 == b.ipv4 && a.ipv6 == b.ipv6 && a.tags == b.tags &&
         a.ephemeral == b.ephemeral && a.token_id == b.token_id && a.created_at == b.created_at;
}

}  // namespace

Result<StoreSnapshot> migrate_store(Store& from, Store& to) {
  auto snapshot = from.export_all();
  if (!snapshot) return snapshot.error();
  if (!snapshot->mesh)
    return Error{Errc::not_found, "the source holds no mesh (no node has ever joined it)"};
  if (auto r = to.import_all(*snapshot); !r) return r.error();
  // The DNS settings live in the settings table beside the mesh's; carried over as settings.
  auto dns = from.dns_settings();
  if (!dns) return dns.error();
  if (auto r = to.set_dns_settings(*dns); !r) return r.error();
  // So do the access policy and the tags admins set (its version starts again in the target).
  auto policy = from.policy_settings();
  if (!policy) return policy.error();
  if (!policy->document.empty() || !policy->admin_tags.empty())
    if (auto r = to.set_policy_settings(*policy); !r) return r.error();
  // Read back and compare: a migration that lost anything says so.
  auto nodes = to.list_nodes();
  if (!nodes) return nodes.error();
  if (nodes->size() != snapshot->nodes.size())
    return Error{Errc::io, "the target holds " + std::to_string(nodes->size()) + " nodes, not " +
                               std::to_string(snapshot->nodes.size())};
  for (std::size_t i = 0; i < nodes->size(); ++i)
    if (!same_node((*nodes)[i], snapshot->nodes[i]))
      return Error{Errc::io, "node " + snapshot->nodes[i].name + " differs in the target"};
  auto mesh = to.mesh_settings();
  if (!mesh) return mesh.error();
  if (!*mesh || (*mesh)->ipv4_prefix != snapshot->mesh->ipv4_prefix ||
      (*mesh)->ipv6_prefix != snapshot->mesh->ipv6_prefix)
    return Error{Errc::io, "the target's mesh prefixes differ from the source's"};
  return snapshot;
}

void add_migrate_command(CLI::App& app, const CliGlobals& globals, CliContext& ctx,
                         CliAction& action) {
  auto options = std::make_shared<MigrateOptions>();
  CLI::App* migrate = app.add_subcommand(
      "migrate", "move the mesh to another store (e.g. SQLite to PostgreSQL); nodes keep keys, "
                 "names and addresses");
  migrate->add_option("--from", options->from, "the store now: sqlite:PATH or postgres://...")
      ->required();
  migrate->add_option("--to", options->to, "an empty store: postgres://... or sqlite:PATH")
      ->required();
  migrate->callback([&globals, &ctx, &action, options] {
    action = [&globals, &ctx, options] {
      std::string why;
      auto from = parse_store_location(options->from, globals.state_dir, why);
      if (!from) throw CliError("--from: " + why);
      auto to = parse_store_location(options->to, globals.state_dir, why);
      if (!to) throw CliError("--to: " + why);
      if (from->backend == to->backend && from->where == to->where)
        throw CliError("--from and --to are the same store");
      if (!has_state(*from)) throw CliError("--from " + options->from + " holds no mesh");
      auto source = open_store(*from);
      if (!source) throw CliError("--from: " + source.error().message);
      auto target = open_store(*to);
      if (!target) throw CliError("--to: " + target.error().message);
      auto moved = migrate_store(**source, **target);
      if (!moved) throw CliError(moved.error().message);
      ctx.out << "Moved the mesh " << moved->mesh->ipv4_prefix.to_string() << " ("
              << moved->nodes.size() << " nodes, " << moved->tokens.size() << " tokens, "
              << moved->relays.size() << " relays) to the new store. Serve it with "
              << "`knit-coordinator --store " << (to->backend == StoreBackend::postgres ? "postgres://..." : options->to)
              << " serve --listen HOST:PORT`, with the same state directory (it holds the "
                 "coordinator key that every join token names).\n";
      return 0;
    };
  });
}

}  // namespace knit::coordinator
