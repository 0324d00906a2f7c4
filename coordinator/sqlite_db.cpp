#include "coordinator/sqlite_db.hpp"

#include <string>
#include <unordered_map>
#include <utility>

namespace knit::coordinator {

// A connection's idle prepared statements by SQL text. The SQL the store runs is a bounded set
// of texts written in the code; the bound is a safety net.
struct StatementCache {
  static constexpr std::size_t kMaxStatements = 128;
  std::unordered_map<std::string, sqlite3_stmt*> idle;
  bool closed = false;  // the connection is gone: finalize, do not keep

  void finalize_all() {
    for (auto& [sql, stmt] : idle) sqlite3_finalize(stmt);
    idle.clear();
  }
};

Statement::Statement(Statement&& other) noexcept
    : db_(std::exchange(other.db_, nullptr)),
      stmt_(std::exchange(other.stmt_, nullptr)),
      cache_(std::move(other.cache_)),
      sql_(std::move(other.sql_)) {}

Statement& Statement::operator=(Statement&& other) noexcept {
  if (this != &other) {
    release();
    db_ = std::exchange(other.db_, nullptr);
    stmt_ = std::exchange(other.stmt_, nullptr);
    cache_ = std::move(other.cache_);
    sql_ = std::move(other.sql_);
  }
  return *this;
}

Statement::~Statement() { release(); }

void Statement::release() {
  sqlite3_stmt* stmt = std::exchange(stmt_, nullptr);
  if (stmt == nullptr) return;
  auto cache = std::move(cache_);
  if (cache == nullptr || cache->closed || cache->idle.size() >= StatementCache::kMaxStatements) {
    sqlite3_finalize(stmt);
    return;
  }
  // Reset ends any read it had open (a WAL snapshot); bindings go, so none leaks to the next use.
  sqlite3_reset(stmt);
  sqlite3_clear_bindings(stmt);
  auto [it, inserted] = cache->idle.try_emplace(std::move(sql_), stmt);
  if (!inserted) sqlite3_finalize(stmt);  // another of the same text is kept already
}

Statement& Statement::bind(int index, std::int64_t value) {
  sqlite3_bind_int64(stmt_, index, value);
  return *this;
}

Statement& Statement::bind(int index, std::string_view text) {
  sqlite3_bind_text(stmt_, index, text.data(), static_cast<int>(text.size()), SQLITE_TRANSIENT);
  return *this;
}

Statement& Statement::bind(int index, std::span<const std::uint8_t> blob) {
  sqlite3_bind_blob(stmt_, index, blob.data(), static_cast<int>(blob.size()), SQLITE_TRANSIENT);
  return *this;
}

Statement& Statement::bind(int index, const std::optional<std::int64_t>& value) {
  if (value) return bind(index, *value);
  return bind_null(index);
}

Statement& Statement::bind_null(int index) {
  sqlite3_bind_null(stmt_, index);
  return *this;
}

Statement::Step Statement::step() {
  int rc = sqlite3_step(stmt_);
  if (rc == SQLITE_ROW) return Step::row;
  if (rc == SQLITE_DONE) return Step::done;
  return Step::failed;
}

Result<void> Statement::run() {
  for (;;) {
    switch (step()) {
      case Step::row: continue;
      case Step::done:
        sqlite3_reset(stmt_);  // ready to be bound and run again
        return Ok{};
      case Step::failed: {
        Error e = error();
        sqlite3_reset(stmt_);
        return e;
      }
    }
  }
}

std::int64_t Statement::column_int(int index) const { return sqlite3_column_int64(stmt_, index); }

std::optional<std::int64_t> Statement::column_optional_int(int index) const {
  if (column_is_null(index)) return std::nullopt;
  return column_int(index);
}

std::string Statement::column_text(int index) const {
  const unsigned char* text = sqlite3_column_text(stmt_, index);
  int size = sqlite3_column_bytes(stmt_, index);
  if (text == nullptr) return {};
  return std::string(reinterpret_cast<const char*>(text), static_cast<std::size_t>(size));
}

std::span<const std::uint8_t> Statement::column_blob(int index) const {
  const void* blob = sqlite3_column_blob(stmt_, index);
  int size = sqlite3_column_bytes(stmt_, index);
  if (blob == nullptr) return {};
  return {static_cast<const std::uint8_t*>(blob), static_cast<std::size_t>(size)};
}

bool Statement::column_is_null(int index) const {
  return sqlite3_column_type(stmt_, index) == SQLITE_NULL;
}

Error Statement::error() const {
  return Error{Errc::io, std::string("database: ") + sqlite3_errmsg(db_)};
}

Database::Database(sqlite3* db) : db_(db), cache_(std::make_shared<StatementCache>()) {}

Database::Database(Database&& other) noexcept
    : db_(std::exchange(other.db_, nullptr)), cache_(std::move(other.cache_)) {}

namespace {

void close_connection(sqlite3* db, StatementCache* cache) {
  if (cache != nullptr) {
    cache->finalize_all();
    cache->closed = true;  // statements still out finalize themselves
  }
  sqlite3_close_v2(db);  // and it closes once they have
}

}  // namespace

Database& Database::operator=(Database&& other) noexcept {
  if (this != &other) {
    close_connection(db_, cache_.get());
    db_ = std::exchange(other.db_, nullptr);
    cache_ = std::move(other.cache_);
  }
  return *this;
}

Database::~Database() { close_connection(db_, cache_.get()); }

Result<Database> Database::open(const std::string& path, int busy_timeout_ms) {
  sqlite3* raw = nullptr;
  int rc = sqlite3_open_v2(path.c_str(), &raw, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, nullptr);
  Database db(raw);  // owns the handle even when opening failed
  if (rc != SQLITE_OK) {
    std::string message = raw ? sqlite3_errmsg(raw) : sqlite3_errstr(rc);
    return Error{Errc::io, "cannot open " + path + ": " + message};
  }
  sqlite3_extended_result_codes(raw, 1);
  sqlite3_busy_timeout(raw, busy_timeout_ms);
  // synchronous=NORMAL is durable across application crashes in WAL mode; only a power loss
  // can undo the last transactions.
  auto setup = db.exec(
      "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=ON;");
  if (!setup) return Error{Errc::io, "cannot open " + path + ": " + setup.error().message};
  return db;
}

Result<Statement> Database::prepare(std::string_view sql) {
  std::string text(sql);
  if (cache_ != nullptr) {
    if (auto it = cache_->idle.find(text); it != cache_->idle.end()) {
      sqlite3_stmt* stmt = it->second;
      cache_->idle.erase(it);
      return Statement(db_, stmt, cache_, std::move(text));
    }
  }
  sqlite3_stmt* stmt = nullptr;
  int rc = sqlite3_prepare_v3(db_, text.data(), static_cast<int>(text.size()),
                              SQLITE_PREPARE_PERSISTENT, &stmt, nullptr);
  if (rc != SQLITE_OK) {
    sqlite3_finalize(stmt);
    return error("prepare");
  }
  return Statement(db_, stmt, cache_, std::move(text));
}

Result<void> Database::exec(const char* sql) {
  char* message = nullptr;
  int rc = sqlite3_exec(db_, sql, nullptr, nullptr, &message);
  if (rc != SQLITE_OK) {
    Error e{Errc::io, std::string("database: ") + (message ? message : sqlite3_errstr(rc))};
    sqlite3_free(message);
    return e;
  }
  return Ok{};
}

std::int64_t Database::last_insert_rowid() const { return sqlite3_last_insert_rowid(db_); }

int Database::changes() const { return sqlite3_changes(db_); }

Error Database::error(std::string_view context) const {
  return Error{Errc::io, "database " + std::string(context) + ": " + sqlite3_errmsg(db_)};
}

namespace {

// BEGIN, COMMIT and ROLLBACK, prepared once like any statement.
Result<void> run_sql(Database& db, std::string_view sql) {
  auto stmt = db.prepare(sql);
  if (!stmt) return stmt.error();
  return stmt->run();
}

}  // namespace

Result<Transaction> Transaction::begin(Database& db) {
  auto r = run_sql(db, "BEGIN IMMEDIATE");
  if (!r) return r.error();
  return Transaction(&db);
}

Transaction::Transaction(Transaction&& other) noexcept : db_(std::exchange(other.db_, nullptr)) {}

Transaction::~Transaction() {
  if (db_ != nullptr) (void)run_sql(*db_, "ROLLBACK");
}

Result<void> Transaction::commit() {
  Database* db = std::exchange(db_, nullptr);
  auto r = run_sql(*db, "COMMIT");
  if (!r) (void)run_sql(*db, "ROLLBACK");
  return r;
}

}  // namespace knit::coordinator
