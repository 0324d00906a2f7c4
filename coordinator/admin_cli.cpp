#include "coordinator/admin_cli.hpp"

#include <sodium.h>

#include <cctype>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <ostream>

#include "coordinator/admin_format.hpp"
#include "coordinator/key_file.hpp"
#include "coordinator/routes.hpp"
#include "coordinator/policy_cli.hpp"
#include "coordinator/state_dir.hpp"
#include "coordinator/token_issue.hpp"
#include "coordinator/tokens.hpp"

namespace knit::coordinator {

namespace {

namespace fs = std::filesystem;

// Commands that only read or change an existing mesh refuse to conjure an empty one from a
// mistyped --state-dir.
std::unique_ptr<Store> open_existing(const CliGlobals& globals) {
  const StoreLocation location = store_location(globals);
  if (!has_state(location))
    throw CliError("no mesh in " +
                   (location.backend == StoreBackend::sqlite ? globals.state_dir
                                                             : std::string("the PostgreSQL store")) +
                   ": check --state-dir and --store, or start one with `knit-coordinator "
                   "--state-dir " +
                   globals.state_dir + " token create` or `serve`");
  return take(open_store(location));
}

std::optional<IpPrefix> requested_prefix(const CliGlobals& globals) {
  if (globals.ipv4_prefix.empty()) return std::nullopt;
  auto prefix = IpPrefix::parse(globals.ipv4_prefix);
  if (!prefix || !prefix->address.is_v4())
    throw CliError("--ipv4-prefix " + globals.ipv4_prefix +
                   " is not an IPv4 prefix such as 100.64.0.0/10");
  return prefix;
}

struct CreateOptions {
  bool reusable = false;
  bool ephemeral = false;
  bool relay = false;
  std::string expires;
  std::vector<std::string> tags;
  std::vector<std::string> advertise;
  std::string auto_approve;  // routes.hpp: CIDR,...,exit
};

int token_create(const CliGlobals& globals, CliContext& ctx, const CreateOptions& o) {
  TokenOptions options;
  options.reusable = o.reusable;
  options.ephemeral = o.ephemeral;
  options.relay = o.relay;
  options.tags = o.tags;
  if (!o.expires.empty()) {
    options.lifetime = parse_duration(o.expires);
    if (!options.lifetime)
      throw CliError("--expires " + o.expires + " is not a duration such as 30m, 12h or 7d");
  }
  std::string route_error;
  const auto auto_approve = control::parse_route_list(o.auto_approve, true, route_error);
  if (!auto_approve) throw CliError("--auto-approve: " + route_error);
  if (o.relay && (auto_approve->exit || !auto_approve->routes.empty()))
    throw CliError("--auto-approve is for node tokens, not --relay ones");
  auto prefix = requested_prefix(globals);
  // Without --advertise the address comes from a previous serve: no state, no address, and no
  // reason to make a key and a database for a command that fails.
  const StoreLocation location = store_location(globals);
  if (o.advertise.empty() && !has_state(location))
    throw CliError("no address for the token: pass --advertise HOST:PORT (where agents reach "
                   "the coordinator) or run `knit-coordinator serve --listen HOST:PORT` first");
  check(prepare_state_dir(globals.state_dir));
  auto store = take(open_store(location));
  take(store->ensure_mesh(prefix, ctx.rng));
  auto addresses = take(token_addresses(*store, o.advertise));
  auto key = take(load_or_create_key(fs::path(globals.state_dir) / kKeyFile, ctx.rng));
  const UnixSeconds now = ctx.now();
  auto issued = take(issue_token(*store, options, addresses, key.public_key, ctx.rng, now));
  if (auto_approve->exit || !auto_approve->routes.empty())
    check(save_auto_approve(*store, issued.record.id, *auto_approve));

  std::string where;
  for (const auto& a : addresses) where += (where.empty() ? "" : ", ") + a.to_string();
  std::string tags;
  for (const auto& t : issued.record.tags) tags += (tags.empty() ? "" : ",") + t;
  ctx.out << "Created " << token_kind(issued.record) << " token " << issued.record.id
          << (issued.record.expires_at
                  ? " (expires " + format_expiry(issued.record.expires_at, now)
                  : std::string(" (never expires"))
          << (tags.empty() ? "" : ", tags " + tags)
          << (auto_approve->exit || !auto_approve->routes.empty()
                  ? ", auto-approves " + control::format_route_list(*auto_approve)
                  : std::string())
          << ") for " << where << ":\n";
  ctx.out << issued.text << "\n" << std::flush;
  sodium_memzero(issued.text.data(), issued.text.size());  // it carries the secret
  return 0;
}

void add_token_commands(CLI::App& app, const CliGlobals& globals, CliContext& ctx,
                        CliAction& action) {
  CLI::App* token = app.add_subcommand("token", "create, list and revoke join tokens");
  token->require_subcommand(1);

  auto create_options = std::make_shared<CreateOptions>();
  CLI::App* create = token->add_subcommand(
      "create", "create a join token; prints it alone as the last line");
  create->add_flag("--reusable", create_options->reusable, "any number of nodes may use it");
  create->add_flag("--ephemeral", create_options->ephemeral,
                   "nodes joining with it are removed once offline for a while");
  create->add_option("--expires", create_options->expires,
                     "it stops working after this long: 30m, 12h, 7d (default: never)");
  create->add_option("--tag", create_options->tags, "tag nodes joining with it (repeatable)")
      ->allow_extra_args(false);
  create->add_option("--auto-approve", create_options->auto_approve,
                     "routes its nodes may advertise without an admin's approval: CIDR,...[,exit]");
  create->add_flag("--relay", create_options->relay, "a token for knit-relay, not for nodes");
  create->add_option("--advertise", create_options->advertise,
                     "HOST:PORT agents reach the coordinator at (repeatable or comma-separated; "
                     "default: what serve saved, its --advertise or else its --listen address)")
      ->delimiter(',')
      ->allow_extra_args(false);
  create->callback([&globals, &ctx, &action, create_options] {
    action = [&globals, &ctx, create_options] {
      return token_create(globals, ctx, *create_options);
    };
  });

  token->add_subcommand("list", "list join tokens (never their secrets)")->callback([&] {
    action = [&globals, &ctx] {
      auto store = open_existing(globals);
      auto tokens = take(store->list_tokens());
      if (tokens.empty())
        ctx.out << "No tokens. Create one with `knit-coordinator token create`.\n";
      else
        ctx.out << tokens_table(tokens, ctx.now());
      return 0;
    };
  });

  auto revoke_id = std::make_shared<std::string>();
  CLI::App* revoke = token->add_subcommand("revoke", "stop a token from admitting anyone");
  revoke->add_option("ID", *revoke_id, "the token's id, as token list shows it")->required();
  revoke->callback([&globals, &ctx, &action, revoke_id] {
    action = [&globals, &ctx, revoke_id] {
      auto store = open_existing(globals);
      check(store->revoke_token(*revoke_id));
      ctx.out << "Revoked token " << *revoke_id
              << ". Nodes that joined with it stay (remove them with `nodes remove NAME`).\n";
      return 0;
    };
  });
}

void add_rename_command(CLI::App* nodes, const CliGlobals& globals, CliContext& ctx, CliAction& action) {
  auto from = std::make_shared<std::string>();
  auto to = std::make_shared<std::string>();
  CLI::App* rename = nodes->add_subcommand("rename", "give a node another name (NAME.<mesh domain>)");
  rename->add_option("NAME", *from, "the node's name, as nodes list shows it")->required();
  rename->add_option("NEW_NAME", *to, "1 to 63 of a-z 0-9 -")->required();
  rename->callback([&globals, &ctx, &action, from, to] {
    action = [&globals, &ctx, from, to] {
      auto store = open_existing(globals);
      Node renamed = take(store->rename_node(*from, *to));
      ctx.out << "Renamed node " << *from << " to " << renamed.name << ". Agents see it within seconds.\n";
      return 0;
    };
  });
}

void add_node_commands(CLI::App& app, const CliGlobals& globals, CliContext& ctx,
                       CliAction& action) {
  CLI::App* nodes = app.add_subcommand("nodes", "list and remove the mesh's nodes");
  nodes->require_subcommand(1);

  auto json = std::make_shared<bool>(false);
  CLI::App* list = nodes->add_subcommand("list", "list nodes: name, addresses, presence");
  list->add_flag("--json", *json, "print JSON instead of a table");
  list->callback([&globals, &ctx, &action, json] {
    action = [&globals, &ctx, json] {
      auto store = open_existing(globals);
      auto all = take(store->list_nodes());
      ctx.out << (*json ? nodes_json(all) : nodes_table(all, ctx.now()));
      return 0;
    };
  });

  auto name = std::make_shared<std::string>();
  CLI::App* remove = nodes->add_subcommand("remove", "remove a node; its addresses become free");
  remove->add_option("NAME", *name, "the node's name, as nodes list shows it")->required();
  remove->callback([&globals, &ctx, &action, name] {
    action = [&globals, &ctx, name] {
      auto store = open_existing(globals);
      auto removed = take(store->remove_node(*name));
      ctx.out << "Removed node " << removed.name << " (" << removed.ipv4.to_string() << ").\n";
      return 0;
    };
  });
  add_rename_command(nodes, globals, ctx, action);
}

void add_relay_commands(CLI::App& app, const CliGlobals& globals, CliContext& ctx,
                        CliAction& action) {
  CLI::App* relays = app.add_subcommand("relays", "show and remove the relays of the relay map");
  relays->require_subcommand(1);
  auto json = std::make_shared<bool>(false);
  CLI::App* list = relays->add_subcommand("list", "list registered relays");
  list->add_flag("--json", *json, "print JSON instead of a table");
  list->callback([&globals, &ctx, &action, json] {
    action = [&globals, &ctx, json] {
      auto store = open_existing(globals);
      auto all = take(store->list_relays());
      ctx.out << (*json ? relays_json(all) : relays_table(all, ctx.now()));
      return 0;
    };
  });

  auto name = std::make_shared<std::string>();
  CLI::App* remove = relays->add_subcommand(
      "remove", "remove a relay from the relay map; it must join again with a relay token");
  remove->add_option("NAME", *name, "the relay's name, as relays list shows it")->required();
  remove->callback([&globals, &ctx, &action, name] {
    action = [&globals, &ctx, name] {
      auto store = open_existing(globals);
      check(store->remove_relay(*name));
      ctx.out << "Removed relay " << *name
              << ". Agents drop it from their relay map within seconds.\n";
      return 0;
    };
  });
}

// `dns show|domain|split`: the mesh's DNS settings, pushed to every agent within seconds.
void add_dns_commands(CLI::App& app, const CliGlobals& globals, CliContext& ctx, CliAction& action) {
  CLI::App* dns = app.add_subcommand("dns", "the mesh domain (NAME.<domain> for every node) and split DNS");
  dns->require_subcommand(1);
  auto show_settings = [&ctx](const DnsSettings& settings) {
    ctx.out << "domain " << settings.domain << "\n";
    for (const auto& entry : settings.split) {
      ctx.out << "split " << entry.domain;
      for (const Endpoint& r : entry.resolvers) ctx.out << " " << r.to_string();
      ctx.out << "\n";
    }
  };
  dns->add_subcommand("show", "print the mesh domain and the split-DNS domains")->callback([&globals, &action, show_settings] {
    action = [&globals, show_settings] {
      auto store = open_existing(globals);
      show_settings(take(store->dns_settings()));
      return 0;
    };
  });
  auto domain = std::make_shared<std::string>();
  CLI::App* set_domain = dns->add_subcommand("domain", "change the mesh domain (default knit.internal)");
  set_domain->add_option("DOMAIN", *domain, "e.g. corp.internal")->required();
  set_domain->callback([&globals, &action, domain, show_settings] {
    action = [&globals, domain, show_settings] {
      auto store = open_existing(globals);
      DnsSettings settings = take(store->dns_settings());
      settings.domain = *domain;
      check(store->set_dns_settings(settings));
      show_settings(take(store->dns_settings()));
      return 0;
    };
  });
  auto split_domain = std::make_shared<std::string>();
  auto resolvers = std::make_shared<std::vector<std::string>>();
  CLI::App* split = dns->add_subcommand(
      "split", "send names under DOMAIN to RESOLVER (IP or IP:PORT, up to 4); no RESOLVER removes DOMAIN");
  split->add_option("DOMAIN", *split_domain, "e.g. corp.example")->required();
  split->add_option("RESOLVER", *resolvers, "e.g. 10.1.0.53");
  split->callback([&globals, &action, split_domain, resolvers, show_settings] {
    action = [&globals, split_domain, resolvers, show_settings] {
      auto store = open_existing(globals);
      DnsSettings settings = take(store->dns_settings());
      std::string name = *split_domain;
      for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      if (!name.empty() && name.back() == '.') name.pop_back();
      std::erase_if(settings.split, [&](const control::SplitDns& e) { return e.domain == name; });
      if (!resolvers->empty()) {
        control::SplitDns entry{name, {}};
        for (const std::string& text : *resolvers) {
          auto endpoint = Endpoint::parse(text);
          if (!endpoint) {
            auto address = IpAddress::parse(text);
            if (address) endpoint = Endpoint(*address, 53);
          }
          if (!endpoint) throw CliError("'" + text + "' is not IP or IP:PORT");
          entry.resolvers.push_back(*endpoint);
        }
        settings.split.push_back(std::move(entry));
      }
      check(store->set_dns_settings(settings));
      show_settings(take(store->dns_settings()));
      return 0;
    };
  });
}

}  // namespace

StoreLocation store_location(const CliGlobals& globals) {
  std::string why;
  auto location = parse_store_location(globals.store, globals.state_dir, why);
  if (!location) throw CliError("--store: " + why);
  return *location;
}

void add_admin_commands(CLI::App& app, const CliGlobals& globals, CliContext& ctx,
                        CliAction& action) {
  add_token_commands(app, globals, ctx, action);
  add_node_commands(app, globals, ctx, action);
  add_relay_commands(app, globals, ctx, action);
  add_dns_commands(app, globals, ctx, action);
  add_route_commands(app, globals, ctx, action);
  add_policy_commands(app, globals, ctx, action);
}

std::unique_ptr<Store> open_existing_store(const CliGlobals& globals) { return open_existing(globals); }

int run_cli(int argc, const char* const* argv, CliContext& ctx,
            const std::vector<CommandRegistrar>& extra) {
  CLI::App app{"knit-coordinator: join tokens, nodes, addresses and relays of a Knit mesh",
               "knit-coordinator"};
  app.fallthrough();  // global options may follow the subcommand too
  app.require_subcommand(1);
  CliGlobals globals;
  globals.state_dir = std::string(kDefaultStateDir);
  app.add_option("--state-dir", globals.state_dir, "where the mesh's state lives")
      ->capture_default_str();
  if (const char* env = std::getenv(std::string(kStoreEnv).c_str())) globals.store = env;
  app.add_option("--store", globals.store,
                 "where the mesh's state is: sqlite:PATH or postgres://USER@HOST/DATABASE "
                 "(default: $KNIT_COORDINATOR_STORE, else knit.db in the state directory)");
  app.add_option("--ipv4-prefix", globals.ipv4_prefix,
                 "the mesh's IPv4 prefix, fixed at first use (default 100.64.0.0/10)");
  app.add_flag_callback(
      "--version",
      [&ctx] {
        ctx.out << "knit-coordinator " << KNIT_VERSION << "\n";
        throw CLI::Success();
      },
      "print the version and exit");

  CliAction action;
  add_admin_commands(app, globals, ctx, action);
  for (const auto& add : extra) add(app, globals, ctx, action);

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int code = app.exit(e, ctx.out, ctx.err);
    return code == 0 ? 0 : 2;
  }
  if (!action) {
    ctx.err << app.help();
    return 2;
  }
  try {
    return action();
  } catch (const CliError& e) {
    ctx.err << "knit-coordinator: " << e.what() << "\n";
    return 1;
  }
}

}  // namespace knit::coordinator
