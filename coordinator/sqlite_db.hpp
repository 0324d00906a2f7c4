// A thin RAII layer over the sqlite3 C API: a connection, prepared statements and transactions.
// Failures are values (Result); nothing here throws.
//
// Prepared statements are kept: a Statement going out of scope is reset and handed back to its
// connection's cache, keyed by its SQL text, and the next prepare of the same text takes it
// instead of parsing the SQL again (parsing was about a sixth of the coordinator's CPU in a join
// storm). A statement in use is out of the cache, so two of the same text can be open at once.
#pragma once

#include <sqlite3.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "coordinator/result.hpp"

namespace knit::coordinator {

class Database;
struct StatementCache;

class Statement {
 public:
  enum class Step { row, done, failed };

  Statement() = default;
  Statement(Statement&& other) noexcept;
  Statement& operator=(Statement&& other) noexcept;
  Statement(const Statement&) = delete;
  Statement& operator=(const Statement&) = delete;
  ~Statement();

  // Parameters are numbered from 1, as in SQL (?1, ?2, ...).
  Statement& bind(int index, std::int64_t value);
  Statement& bind(int index, std::string_view text);
  Statement& bind(int index, std::span<const std::uint8_t> blob);
  Statement& bind(int index, const std::optional<std::int64_t>& value);
  Statement& bind_null(int index);

  Step step();
  // Runs a statement that returns no rows; Error carries sqlite's message.
  Result<void> run();

  // Columns are numbered from 0.
  std::int64_t column_int(int index) const;
  std::optional<std::int64_t> column_optional_int(int index) const;
  std::string column_text(int index) const;
  std::span<const std::uint8_t> column_blob(int index) const;
  bool column_is_null(int index) const;

  Error error() const;

 private:
  friend class Database;
  Statement(sqlite3* db, sqlite3_stmt* stmt, std::shared_ptr<StatementCache> cache, std::string sql)
      : db_(db), stmt_(stmt), cache_(std::move(cache)), sql_(std::move(sql)) {}
  // Back to the cache when there is one and room, else finalized.
  void release();

  sqlite3* db_ = nullptr;
  sqlite3_stmt* stmt_ = nullptr;
  std::shared_ptr<StatementCache> cache_;  // null: not cached
  std::string sql_;
};

class Database {
 public:
  Database() = default;
  Database(Database&& other) noexcept;
  Database& operator=(Database&& other) noexcept;
  Database(const Database&) = delete;
  Database& operator=(const Database&) = delete;
  ~Database();

  // Opens (creating it if needed) the file with the settings every connection needs: WAL, so
  // readers never block the writer; foreign keys; and a busy timeout so an admin command and a
  // running server wait for each other's short transactions instead of failing.
  static Result<Database> open(const std::string& path, int busy_timeout_ms = 5000);

  Result<Statement> prepare(std::string_view sql);
  // Runs one or more statements with no parameters and no rows.
  Result<void> exec(const char* sql);
  std::int64_t last_insert_rowid() const;
  int changes() const;
  Error error(std::string_view context) const;
  sqlite3* handle() const { return db_; }

 private:
  explicit Database(sqlite3* db);
  sqlite3* db_ = nullptr;
  std::shared_ptr<StatementCache> cache_;
};

// BEGIN IMMEDIATE ... COMMIT; rolled back when dropped uncommitted. IMMEDIATE takes the write lock
// up front: in WAL mode a deferred read-then-write transaction fails with SQLITE_BUSY_SNAPSHOT
// when another connection wrote in between, without waiting on the busy timeout.
class Transaction {
 public:
  static Result<Transaction> begin(Database& db);
  Transaction(Transaction&& other) noexcept;
  Transaction& operator=(Transaction&&) = delete;
  Transaction(const Transaction&) = delete;
  Transaction& operator=(const Transaction&) = delete;
  ~Transaction();

  Result<void> commit();

 private:
  explicit Transaction(Database* db) : db_(db) {}
  Database* db_ = nullptr;
};

}  // namespace knit::coordinator
