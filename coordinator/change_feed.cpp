#include "coordinator/change_feed.hpp"

#include "coordinator/pg_change_feed.hpp"
#include "coordinator/pg_store.hpp"
#include "coordinator/sqlite_change_feed.hpp"

namespace knit::coordinator {

std::unique_ptr<ChangeFeed> make_change_feed(asio::io_context& io, Store& store) {
  switch (store.backend()) {
    case StoreBackend::sqlite:
      return make_sqlite_change_feed(io, static_cast<SqliteStore&>(store));
    case StoreBackend::postgres: {
      auto& pg = static_cast<PgStore&>(store);
      return std::make_unique<PgChangeFeed>(io, pg.conninfo(), pg.origin());
    }
  }
  return nullptr;
}

}  // namespace knit::coordinator
