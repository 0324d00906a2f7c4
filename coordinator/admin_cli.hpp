// knit-coordinator's command line (docs/ARCHITECTURE.md "CLI and daemon", contract):
//
//   knit-coordinator [--state-dir DIR] [--ipv4-prefix P] [--store sqlite:PATH|postgres://...]
//     token create [--reusable] [--ephemeral] [--expires D] [--tag T]... [--relay]
//                  [--advertise HOST:PORT]... [--auto-approve CIDR,...,exit]    prints the token alone as its last line
//     token list | token revoke ID
//     nodes list [--json] | nodes remove NAME | nodes tag NAME tag:T... | nodes untag NAME tag:T...
//     policy get | set FILE | clear | test FILE | check SRC DST PORT/PROTO   (policy_cli.hpp)
//     relays list [--json] | relays remove NAME
//     routes list [--json] | routes approve|reject NODE CIDR|exit   (routes_cli.cpp)
//     migrate --from sqlite:PATH --to postgres://...   (migrate_command.hpp)
//
// Commands are registered on a CLI::App by functions, so `serve` (in its own file) plugs in
// the same way: a registrar adds its subcommand and, when chosen, stores what to run in the
// CliAction. Actions throw CliError with a one-line message; run_cli prints it and returns 1.
#pragma once

#include <CLI/CLI.hpp>
#include <functional>
#include <iosfwd>
#include <memory>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "base/random.hpp"
#include "coordinator/records.hpp"
#include "coordinator/result.hpp"

namespace knit::coordinator {

// Options shared by every subcommand (given before or after it).
struct CliGlobals {
  std::string state_dir;
  std::string ipv4_prefix;  // empty: keep the mesh's, or 100.64.0.0/10 on first use
  std::string store;        // --store, else KNIT_COORDINATOR_STORE; empty: knit.db in state_dir
};

// The store the globals name; throws CliError for a malformed --store.
struct StoreLocation;
StoreLocation store_location(const CliGlobals& globals);

// Where commands write and what they read from the world: tests swap in their own.
struct CliContext {
  std::ostream& out;
  std::ostream& err;
  std::function<UnixSeconds()> now;  // wall clock, unix seconds
  Random& rng;
};

// The command chosen on the command line; returns the exit code.
using CliAction = std::function<int()>;

// A person-readable failure; run_cli prints "knit-coordinator: <what>" and exits 1.
struct CliError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// A store result for a command: its value, or its message thrown as a CliError.
template <typename T>
T take(Result<T>&& result) {
  if (!result) throw CliError(result.error().message);
  return std::move(result).value();
}
inline void check(Result<void>&& result) {
  if (!result) throw CliError(result.error().message);
}

using CommandRegistrar = std::function<void(CLI::App& app, const CliGlobals& globals,
                                            CliContext& ctx, CliAction& action)>;

// The store of an existing mesh (CliError when --state-dir holds none), for commands in other files.
class Store;
std::unique_ptr<Store> open_existing_store(const CliGlobals& globals);

// Adds `token`, `nodes`, `relays`, `dns` and `policy` (policy_cli.hpp).
void add_admin_commands(CLI::App& app, const CliGlobals& globals, CliContext& ctx,
                        CliAction& action);

// Adds `routes` (routes_cli.cpp).
void add_route_commands(CLI::App& app, const CliGlobals& globals, CliContext& ctx, CliAction& action);

// Parses argv (argv[0] is the program), runs the chosen command and returns the exit code:
// 0 done, 1 failed (message on err), 2 bad usage. `extra` registers more commands (serve).
int run_cli(int argc, const char* const* argv, CliContext& ctx,
            const std::vector<CommandRegistrar>& extra = {});

}  // namespace knit::coordinator
