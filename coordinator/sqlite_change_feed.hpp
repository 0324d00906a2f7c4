// The SQLite change feed: inotify on the state directory tells that knit.db or its WAL was
// written; PRAGMA data_version tells whether another connection committed (the server's own
// commits write the WAL too); the change log then says what changed. A commit's last WAL write
// can come a moment before the commit is visible, so every wake-up looks again shortly after.
// Old notes are trimmed now and then (a server that starts reads the nodes, not the log).
#pragma once

#include <asio.hpp>

#include <chrono>
#include <cstdint>
#include <memory>

#include "coordinator/change_feed.hpp"
#include "coordinator/sqlite_store.hpp"

namespace knit::coordinator {

class SqliteChangeFeed final : public ChangeFeed {
 public:
  SqliteChangeFeed(asio::io_context& io, SqliteStore& store);
  ~SqliteChangeFeed() override;

  void start(Handler handler) override;
  void stop() override;

 private:
  void wait();
  void on_event(std::error_code ec);
  void look();  // data_version, then the log
  void arm_recheck();
  void arm_trim();

  asio::io_context& io_;
  SqliteStore& store_;
  asio::posix::stream_descriptor inotify_;
  asio::steady_timer recheck_;
  asio::steady_timer trim_;
  Handler handler_;
  std::uint64_t cursor_ = 0;
  std::uint64_t data_version_ = 0;
  bool recheck_armed_ = false;
  bool stopped_ = false;
  std::shared_ptr<char> alive_ = std::make_shared<char>();
};

std::unique_ptr<ChangeFeed> make_sqlite_change_feed(asio::io_context& io, SqliteStore& store);

}  // namespace knit::coordinator
