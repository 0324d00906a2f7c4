// The PostgreSQL change feed: a connection of its own that LISTENs on knit_changes; every
// committed change another coordinator (or an admin command) made arrives as a notification
// "<origin> <kind> <node key>" (pg_store.hpp), in commit order. Its socket sits in the server's
// event loop. When the connection drops, notifications sent meanwhile are lost: the feed
// reconnects with backoff and asks the server to read everything again (resync).
#pragma once

#include <asio.hpp>

#include <chrono>
#include <memory>
#include <string>

#include "coordinator/change_feed.hpp"
#include "coordinator/pg_conn.hpp"

namespace knit::coordinator {

class PgChangeFeed final : public ChangeFeed {
 public:
  // own_origin: the server's store connection's origin, whose notifications are skipped.
  PgChangeFeed(asio::io_context& io, std::string conninfo, std::string own_origin);
  ~PgChangeFeed() override;

  void start(Handler handler) override;
  void stop() override;

 private:
  bool listen();  // connect and LISTEN; false when the database is away
  void wait();
  void on_readable(std::error_code ec);
  void lost(const std::string& why);
  void retry();

  asio::io_context& io_;
  PgConnection conn_;
  std::string own_origin_;
  std::unique_ptr<asio::posix::stream_descriptor> socket_;
  asio::steady_timer retry_timer_;
  std::chrono::milliseconds backoff_{100};
  Handler handler_;
  bool stopped_ = false;
  std::shared_ptr<char> alive_ = std::make_shared<char>();
};

// "origin kind key" to a change; nullopt when malformed or from own_origin.
std::optional<StoreChange> parse_notification(std::string_view payload,
                                              std::string_view own_origin);

}  // namespace knit::coordinator
