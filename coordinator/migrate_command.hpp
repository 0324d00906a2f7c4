// `knit-coordinator migrate --from sqlite:PATH --to postgres://...`: moves a whole mesh (its
// settings, tokens, nodes with their keys, names and addresses, relays) from one store to
// another in one transaction, into an empty target, and checks the copy. No node re-joins:
// agents keep their keys and addresses and reconnect to a coordinator serving the new store.
// Stop the coordinators on the old store first (a change made there afterwards is not moved).
#pragma once

#include "coordinator/admin_cli.hpp"
#include "coordinator/store.hpp"

namespace knit::coordinator {

void add_migrate_command(CLI::App& app, const CliGlobals& globals, CliContext& ctx,
                         CliAction& action);

// The work itself, for tests: every node of `from` is in `to` afterwards, identical.
Result<StoreSnapshot> migrate_store(Store& from, Store& to);

}  // namespace knit::coordinator
