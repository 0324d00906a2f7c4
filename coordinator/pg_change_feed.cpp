#include "coordinator/pg_change_feed.hpp"

#include <stdexcept>

#include "base/bytes.hpp"
#include "base/log.hpp"
#include "coordinator/pg_store.hpp"

namespace knit::coordinator {

namespace {

constexpr std::string_view kLog = "coordinator";
constexpr auto kMaxBackoff = std::chrono::milliseconds(2000);

}  // namespace

std::optional<StoreChange> parse_notification(std::string_view payload,
                                              std::string_view own_origin) {
  const auto first = payload.find(' ');
  if (first == std::string_view::npos) return std::nullopt;
  const auto second = payload.find(' ', first + 1);
  if (second == std::string_view::npos) return std::nullopt;
  if (payload.substr(0, first) == own_origin) return std::nullopt;
  const std::string_view kind = payload.substr(first + 1, second - first - 1);
  const std::string_view key = payload.substr(second + 1);
  StoreChange change;
  if (kind == "1") {
    auto bytes = from_base64(key);
    if (!bytes || bytes->size() != change.node_key.size()) return std::nullopt;
    std::copy(bytes->begin(), bytes->end(), change.node_key.begin());
    change.kind = StoreChange::Kind::node;
  } else if (kind == "2") {
    change.kind = StoreChange::Kind::relays;
  } else if (kind == "4") {
    change.kind = StoreChange::Kind::dns;
  } else if (kind == "5") {
    change.kind = StoreChange::Kind::policy;
  } else {
    change.kind = StoreChange::Kind::nodes;  // and anything newer: read everything
  }
  return change;
}

PgChangeFeed::PgChangeFeed(asio::io_context& io, std::string conninfo, std::string own_origin)
    : io_(io),
      conn_(std::move(conninfo)),
      own_origin_(std::move(own_origin)),
      retry_timer_(io) {}

PgChangeFeed::~PgChangeFeed() { stop(); }

void PgChangeFeed::start(Handler handler) {
  handler_ = std::move(handler);
  if (!listen()) throw std::runtime_error("cannot LISTEN for changes on PostgreSQL");
  wait();
}

void PgChangeFeed::stop() {
  if (stopped_) return;
  stopped_ = true;
  retry_timer_.cancel();
  if (socket_) {
    socket_->cancel();
    socket_->release();  // libpq owns the descriptor
    socket_.reset();
  }
}

bool PgChangeFeed::listen() {
  if (socket_) {
    socket_->cancel();
    socket_->release();
    socket_.reset();
  }
  if (!conn_.connect()) return false;
  if (!conn_.exec_script("LISTEN " + std::string(kNotifyChannel))) return false;
  socket_ = std::make_unique<asio::posix::stream_descriptor>(io_, PQsocket(conn_.handle()));
  return true;
}

void PgChangeFeed::wait() {
  socket_->async_wait(asio::posix::stream_descriptor::wait_read,
                      [this, alive = std::weak_ptr<char>(alive_)](std::error_code ec) {
                        if (alive.expired()) return;
                        on_readable(ec);
                      });
}

void PgChangeFeed::on_readable(std::error_code ec) {
  if (stopped_ || ec == asio::error::operation_aborted) return;
  if (ec) return lost(ec.message());
  PGconn* conn = conn_.handle();
  if (PQconsumeInput(conn) == 0 || PQstatus(conn) != CONNECTION_OK)
    return lost(PQerrorMessage(conn));
  std::vector<StoreChange> changes;
  while (PGnotify* n = PQnotifies(conn)) {
    if (auto change = parse_notification(n->extra != nullptr ? n->extra : "", own_origin_))
      changes.push_back(*change);
    PQfreemem(n);
  }
  if (!changes.empty()) handler_(std::move(changes), false);
  if (!stopped_) wait();
}

void PgChangeFeed::lost(const std::string& why) {
  std::string line = why;
  if (auto end = line.find('\n'); end != std::string::npos) line.resize(end);
  log(LogLevel::warn, kLog, "lost the PostgreSQL change feed (", line,
      "): reconnecting with backoff");
  backoff_ = std::chrono::milliseconds(100);
  retry();
}

void PgChangeFeed::retry() {
  retry_timer_.expires_after(backoff_);
  retry_timer_.async_wait([this, alive = std::weak_ptr<char>(alive_)](std::error_code ec) {
    if (ec || alive.expired() || stopped_) return;
    if (!listen()) {
      backoff_ = std::min(backoff_ * 2, kMaxBackoff);
      return retry();
    }
    log(LogLevel::info, kLog, "PostgreSQL change feed back: reading every node again");
    wait();
    handler_({}, /*resync=*/true);
  });
}

}  // namespace knit::coordinator
