// The access policy's admin commands (policy/document.hpp has the document):
//
//   knit-coordinator policy get                    the stored document, as written
//   knit-coordinator policy set FILE               validate (shape, names, the document's tests)
//                                                  and store; on any error print FILE:LINE:COLUMN
//                                                  and change nothing. Agents have it within 2 s.
//   knit-coordinator policy clear                  no policy: the mesh is open again
//   knit-coordinator policy test FILE              validate only
//   knit-coordinator policy check SRC DST PORT/PROTO
//                                                  allowed or denied by the stored policy, and the
//                                                  rule that decides (PORT/PROTO: 5432/tcp, 53/udp, icmp)
//   knit-coordinator nodes tag NAME tag:T...       tags an admin gives a node (kept across re-joins;
//   knit-coordinator nodes untag NAME tag:T...     a node can never set its own); refused when the
//                                                  stored policy's tests would then fail
#pragma once

#include "coordinator/admin_cli.hpp"

namespace knit::coordinator {

void add_policy_commands(CLI::App& app, const CliGlobals& globals, CliContext& ctx, CliAction& action);

}  // namespace knit::coordinator
