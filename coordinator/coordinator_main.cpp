// knit-coordinator: the mesh's coordinator and its admin commands (admin_cli.hpp).
#include <ctime>
#include <iostream>

#include "coordinator/admin_cli.hpp"
#include "coordinator/migrate_command.hpp"
#include "coordinator/serve_command.hpp"

int main(int argc, char** argv) {
  knit::SystemRandom rng;
  knit::coordinator::CliContext ctx{
      std::cout, std::cerr,
      [] { return static_cast<knit::coordinator::UnixSeconds>(std::time(nullptr)); }, rng};
  return knit::coordinator::run_cli(argc, argv, ctx, {knit::coordinator::add_serve_command,
                                                knit::coordinator::add_migrate_command});
}
