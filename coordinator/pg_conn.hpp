// A thin layer over libpq for the PostgreSQL store: one connection, statements with text
// parameters, results as text, and transactions that survive a lost connection. Nothing here
// throws; failures are values.
//
// A transaction either commits whole or not at all: when the connection drops in the middle
// (or the server restarts), PostgreSQL rolls it back, and run_transaction reconnects with
// backoff and runs it again from the start, saying so in one log line (and one more when the
// database is back). A serialization failure, a deadlock or a unique violation between two
// coordinators racing for the same row is retried the same way.
#pragma once

#include <libpq-fe.h>

#include <chrono>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "coordinator/result.hpp"

namespace knit::coordinator {

// Statements are prepared once per connection (by their SQL text, as sqlite_db.hpp keeps
// SQLite's) and executed by name afterwards, so PostgreSQL parses and plans each text once, not
// on every join. exec_pipeline() sends several statements in one round trip (libpq's pipeline
// mode): a join's reads, then its writes, cost two waits for the database, not twenty.
//
// One result; rows and columns from 0, values as PostgreSQL's text output.
class PgResult {
 public:
  PgResult() = default;
  explicit PgResult(PGresult* result) : result_(result) {}
  PgResult(PgResult&& other) noexcept : result_(other.result_) { other.result_ = nullptr; }
  PgResult& operator=(PgResult&& other) noexcept;
  PgResult(const PgResult&) = delete;
  PgResult& operator=(const PgResult&) = delete;
  ~PgResult();

  int rows() const;
  bool is_null(int row, int column) const;
  std::string text(int row, int column) const;
  std::int64_t integer(int row, int column) const;  // 0 when null or not a number
  std::optional<std::int64_t> optional_integer(int row, int column) const;
  std::vector<std::uint8_t> bytes(int row, int column) const;  // bytea
  // Rows changed by an INSERT, UPDATE or DELETE.
  std::int64_t affected() const;

 private:
  PGresult* result_ = nullptr;
};

// A parameter: text, or SQL NULL.
using PgParam = std::optional<std::string>;
PgParam pg_int(std::int64_t value);
PgParam pg_int(const std::optional<std::int64_t>& value);
PgParam pg_bytes(const std::uint8_t* data, std::size_t size);  // bytea, hex form

// One statement of a pipeline.
struct PgStatement {
  std::string sql;
  std::vector<PgParam> params;
};

// Retry limits: a lost connection is retried for up to `outage` with backoff from 50 ms
// doubling to 1 s; a conflict between concurrent transactions up to 8 times.
struct PgLimits {
  std::chrono::milliseconds outage{5000};
  int conflicts = 8;
};

class PgConnection {
 public:
  using Limits = PgLimits;

  explicit PgConnection(std::string conninfo, Limits limits = {});
  ~PgConnection();
  PgConnection(const PgConnection&) = delete;
  PgConnection& operator=(const PgConnection&) = delete;

  // Connects (and reconnects): Errc::io with libpq's message when it cannot.
  Result<void> connect();
  const std::string& conninfo() const { return conninfo_; }

  // One statement. Errors: Errc::conflict for a unique violation (SQLSTATE 23505), Errc::io
  // otherwise, with the message and the SQLSTATE kept for run_transaction.
  Result<PgResult> exec(std::string_view sql, const std::vector<PgParam>& params = {});
  // Several statements without parameters.
  Result<void> exec_script(std::string_view sql);
  // The statements in order, in one round trip; one result each. The first that fails is the
  // error (as exec's), and PostgreSQL skips the rest (inside a transaction, which it aborts).
  Result<std::vector<PgResult>> exec_pipeline(const std::vector<PgStatement>& statements);
  // Statements sent to the server so far (tests and benchmarks count round trips with it).
  std::uint64_t round_trips() const { return round_trips_; }

  // BEGIN; body; COMMIT, retried as the header says. body returns an error to roll back (that
  // error is returned, with nothing retried unless it is one of those above).
  Result<void> run_transaction(const std::function<Result<void>()>& body);

  PGconn* handle() const { return conn_; }
  // The SQLSTATE of the last failed statement ("" for none or a lost connection).
  const std::string& last_state() const { return last_state_; }

 private:
  bool connection_lost() const;
  // The name `sql` is prepared under on this connection; "" when it is not yet (then *fresh is
  // the name to prepare it as), or when the cache is full (then the text is sent each time).
  std::string prepared_name(const std::string& sql, std::string* fresh);
  Error failure(PGresult* raw);
  // Reconnects with backoff until the outage limit; false when the database stays away.
  bool recover(const std::string& why);

  std::string conninfo_;
  Limits limits_;
  PGconn* conn_ = nullptr;
  std::string last_state_;
  bool in_transaction_ = false;
  std::unordered_map<std::string, std::string> prepared_;  // SQL text -> statement name
  std::uint64_t round_trips_ = 0;
};

}  // namespace knit::coordinator
