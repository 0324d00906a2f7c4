// How a running server hears of changes other connections commit (store.hpp): an admin command,
// or another coordinator on the same PostgreSQL. Pushed, not polled: SQLite's feed wakes on the
// database file changing (inotify) and reads the change log; PostgreSQL's LISTENs.
//
//   admin CLI ──commit + note──► knit.db ──inotify──► SqliteChangeFeed ──► Server
//   coordinator B ──commit + NOTIFY──► PostgreSQL ──LISTEN──► PgChangeFeed ──► Server (A)
#pragma once

#include <asio.hpp>

#include <functional>
#include <memory>
#include <vector>

#include "coordinator/store.hpp"

namespace knit::coordinator {

class ChangeFeed {
 public:
  // changes: by others, in commit order. resync: some may have been missed (the feed lost its
  // connection): read everything again.
  using Handler = std::function<void(std::vector<StoreChange> changes, bool resync)>;

  virtual ~ChangeFeed() = default;
  // Calls handler on the io_context's thread, never from inside start(). Throws
  // std::runtime_error when it cannot watch at all.
  virtual void start(Handler handler) = 0;
  virtual void stop() = 0;
};

// The feed for this store's backend.
std::unique_ptr<ChangeFeed> make_change_feed(asio::io_context& io, Store& store);

}  // namespace knit::coordinator
