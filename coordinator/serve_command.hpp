// `knit-coordinator [--state-dir DIR] [--ipv4-prefix P] serve --listen HOST:PORT
//  [--advertise HOST:PORT]... [--ephemeral-grace DURATION]` (docs/ARCHITECTURE.md "CLI and
// daemon", contract): runs the control server (server.hpp) until SIGINT or SIGTERM.
//
// On start it prepares the state directory, fixes the mesh (the global --ipv4-prefix counts only
// while the mesh has no nodes: later it is ignored with a warning), loads or makes the
// coordinator key, marks every node offline (nobody is connected yet) and saves the addresses
// `token create` puts into tokens from then on: --advertise (repeatable or comma-separated, also
// read from KNIT_COORDINATOR_ADVERTISE, which the unit takes from /etc/knit/coordinator.conf),
// else the listen address. --ephemeral-grace (default 10m) is how long
// an ephemeral node may stay offline before it is removed.
//
// --metrics IP:PORT (opt-in) serves Prometheus text on GET /metrics (net/metrics_server.hpp):
// control connections, nodes online and in total, joins, refused joins, and connections the
// coordinator dropped, by reason.
#pragma once

#include <CLI/CLI.hpp>

#include "coordinator/admin_cli.hpp"

namespace knit::coordinator {

// A CommandRegistrar: run_cli(argc, argv, ctx, {add_serve_command}).
void add_serve_command(CLI::App& app, const CliGlobals& globals, CliContext& ctx,
                       CliAction& action);

}  // namespace knit::coordinator
