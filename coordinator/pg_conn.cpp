#include "coordinator/pg_conn.hpp"

#include <charconv>
#include <optional>
#include <thread>

#include "base/bytes.hpp"
#include "base/log.hpp"

namespace knit::coordinator {

namespace {

constexpr std::string_view kLog = "coordinator";

// SQLSTATEs worth running a transaction again for (PostgreSQL appendix A).
bool retryable(const std::string& state) {
  return state == "40001" ||  // serialization_failure
         state == "40P01" ||  // deadlock_detected
         state == "23505";    // unique_violation: a concurrent insert won the race
}

std::string first_line(const char* message) {
  std::string out = message != nullptr ? message : "";
  if (auto end = out.find('\n'); end != std::string::npos) out.resize(end);
  return out;
}

}  // namespace

PgResult& PgResult::operator=(PgResult&& other) noexcept {
  if (this != &other) {
    if (result_ != nullptr) PQclear(result_);
    result_ = other.result_;
    other.result_ = nullptr;
  }
  return *this;
}

PgResult::~PgResult() {
  if (result_ != nullptr) PQclear(result_);
}

int PgResult::rows() const { return result_ != nullptr ? PQntuples(result_) : 0; }

bool PgResult::is_null(int row, int column) const {
  return result_ == nullptr || PQgetisnull(result_, row, column) != 0;
}

std::string PgResult::text(int row, int column) const {
  if (is_null(row, column)) return {};
  return std::string(PQgetvalue(result_, row, column),
                     static_cast<std::size_t>(PQgetlength(result_, row, column)));
}

std::int64_t PgResult::integer(int row, int column) const {
  return optional_integer(row, column).value_or(0);
}

std::optional<std::int64_t> PgResult::optional_integer(int row, int column) const {
  if (is_null(row, column)) return std::nullopt;
  const char* text = PQgetvalue(result_, row, column);
  const int size = PQgetlength(result_, row, column);
  std::int64_t value = 0;
  if (std::from_chars(text, text + size, value).ec != std::errc()) return std::nullopt;
  return value;
}

std::vector<std::uint8_t> PgResult::bytes(int row, int column) const {
  const std::string value = text(row, column);  // "\x0a1b..."
  if (value.size() < 2 || value[0] != '\\' || value[1] != 'x') return {};
  auto decoded = from_hex(std::string_view(value).substr(2));
  return decoded ? std::vector<std::uint8_t>(decoded->begin(), decoded->end())
                 : std::vector<std::uint8_t>{};
}

std::int64_t PgResult::affected() const {
  if (result_ == nullptr) return 0;
  const char* n = PQcmdTuples(result_);
  std::int64_t value = 0;
  std::from_chars(n, n + std::char_traits<char>::length(n), value);
  return value;
}

PgParam pg_int(std::int64_t value) { return std::to_string(value); }

PgParam pg_int(const std::optional<std::int64_t>& value) {
  if (!value) return std::nullopt;
  return std::to_string(*value);
}

PgParam pg_bytes(const std::uint8_t* data, std::size_t size) {
  return "\\x" + to_hex(ByteSpan(data, size));
}

PgConnection::PgConnection(std::string conninfo, Limits limits)
    : conninfo_(std::move(conninfo)), limits_(limits) {}

PgConnection::~PgConnection() {
  if (conn_ != nullptr) PQfinish(conn_);
}

Result<void> PgConnection::connect() {
  if (conn_ != nullptr) PQfinish(conn_);
  prepared_.clear();  // a new session has none
  conn_ = PQconnectdb(conninfo_.c_str());
  if (conn_ == nullptr || PQstatus(conn_) != CONNECTION_OK) {
    std::string why = conn_ != nullptr ? first_line(PQerrorMessage(conn_)) : "out of memory";
    if (conn_ != nullptr) PQfinish(conn_);
    conn_ = nullptr;
    return Error{Errc::io, "cannot connect to PostgreSQL: " + why};
  }
  // Quiet: NOTICEs (e.g. "relation already exists, skipping") are not for our log.
  PQsetNoticeProcessor(conn_, [](void*, const char*) {}, nullptr);
  return Ok{};
}

bool PgConnection::connection_lost() const {
  return conn_ == nullptr || PQstatus(conn_) != CONNECTION_OK;
}

namespace {

// Distinct statement texts a connection keeps prepared; the store has a few dozen.
constexpr std::size_t kMaxPrepared = 512;

}  // namespace

std::string PgConnection::prepared_name(const std::string& sql, std::string* fresh) {
  if (auto it = prepared_.find(sql); it != prepared_.end()) return it->second;
  if (fresh != nullptr) *fresh = prepared_.size() < kMaxPrepared ? "knit_" + std::to_string(prepared_.size()) : "";
  return {};
}

Error PgConnection::failure(PGresult* raw) {
  const char* state = raw != nullptr ? PQresultErrorField(raw, PG_DIAG_SQLSTATE) : nullptr;
  last_state_ = state != nullptr ? state : "";
  const char* message = raw != nullptr ? PQresultErrorMessage(raw) : nullptr;
  std::string why = first_line(message != nullptr && *message != 0 ? message : PQerrorMessage(conn_));
  return Error{last_state_ == "23505" ? Errc::conflict : Errc::io, "database: " + why};
}

Result<PgResult> PgConnection::exec(std::string_view sql, const std::vector<PgParam>& params) {
  last_state_.clear();
  if (conn_ == nullptr) return Error{Errc::io, "not connected to PostgreSQL"};
  std::vector<const char*> values;
  values.reserve(params.size());
  for (const PgParam& p : params) values.push_back(p ? p->c_str() : nullptr);
  const std::string text(sql);
  std::string fresh;
  std::string name = prepared_name(text, &fresh);
  if (name.empty() && !fresh.empty()) {
    ++round_trips_;
    PGresult* prepared = PQprepare(conn_, fresh.c_str(), text.c_str(), static_cast<int>(params.size()), nullptr);
    const bool ok = prepared != nullptr && PQresultStatus(prepared) == PGRES_COMMAND_OK;
    if (!ok) {
      Error error = failure(prepared);
      if (prepared != nullptr) PQclear(prepared);
      return error;
    }
    PQclear(prepared);
    prepared_.emplace(text, fresh);
    name = fresh;
  }
  ++round_trips_;
  PGresult* raw = name.empty()
                      ? PQexecParams(conn_, text.c_str(), static_cast<int>(params.size()), nullptr,
                                     values.data(), nullptr, nullptr, 0)
                      : PQexecPrepared(conn_, name.c_str(), static_cast<int>(params.size()),
                                       values.data(), nullptr, nullptr, 0);
  const auto status = raw != nullptr ? PQresultStatus(raw) : PGRES_FATAL_ERROR;
  if (status == PGRES_COMMAND_OK || status == PGRES_TUPLES_OK) return PgResult(raw);
  Error error = failure(raw);
  if (raw != nullptr) PQclear(raw);
  return error;
}

Result<std::vector<PgResult>> PgConnection::exec_pipeline(const std::vector<PgStatement>& statements) {
  last_state_.clear();
  if (conn_ == nullptr) return Error{Errc::io, "not connected to PostgreSQL"};
  if (statements.empty()) return std::vector<PgResult>{};
  if (PQenterPipelineMode(conn_) != 1) return Error{Errc::io, "database: " + first_line(PQerrorMessage(conn_))};
  ++round_trips_;
  // What is sent: for each statement, a prepare first when its text is new here.
  struct Sent {
    bool prepare = false;
    std::string name;
    const std::string* sql = nullptr;
  };
  std::vector<Sent> sent;
  sent.reserve(statements.size() * 2);
  std::unordered_map<std::string, std::string> preparing;  // in this pipeline
  bool send_failed = false;
  for (const PgStatement& statement : statements) {
    std::vector<const char*> values;
    values.reserve(statement.params.size());
    for (const PgParam& p : statement.params) values.push_back(p ? p->c_str() : nullptr);
    const int n = static_cast<int>(statement.params.size());
    std::string fresh;
    std::string name = prepared_name(statement.sql, &fresh);
    if (name.empty())
      if (auto it = preparing.find(statement.sql); it != preparing.end()) name = it->second;
    if (name.empty() && !fresh.empty()) {
      fresh = "knit_" + std::to_string(prepared_.size() + preparing.size());
      if (PQsendPrepare(conn_, fresh.c_str(), statement.sql.c_str(), n, nullptr) != 1) {
        send_failed = true;
        break;
      }
      sent.push_back(Sent{true, fresh, &statement.sql});
      preparing.emplace(statement.sql, fresh);
      name = fresh;
    }
    const int ok = name.empty() ? PQsendQueryParams(conn_, statement.sql.c_str(), n, nullptr,
                                                    values.data(), nullptr, nullptr, 0)
                                : PQsendQueryPrepared(conn_, name.c_str(), n, values.data(),
                                                      nullptr, nullptr, 0);
    if (ok != 1) {
      send_failed = true;
      break;
    }
    sent.push_back(Sent{false, name, &statement.sql});
  }
  std::optional<Error> error;
  if (send_failed) error = Error{Errc::io, "database: " + first_line(PQerrorMessage(conn_))};
  if (PQpipelineSync(conn_) != 1 && !error)
    error = Error{Errc::io, "database: " + first_line(PQerrorMessage(conn_))};
  std::vector<PgResult> out;
  out.reserve(statements.size());
  // One result (then a null) per command sent, then the sync's.
  for (const Sent& s : sent) {
    PGresult* raw = PQgetResult(conn_);
    if (raw == nullptr) {  // the connection went away
      if (!error) error = Error{Errc::io, "database: " + first_line(PQerrorMessage(conn_))};
      break;
    }
    const auto status = PQresultStatus(raw);
    const bool ok = status == PGRES_COMMAND_OK || status == PGRES_TUPLES_OK;
    if (!ok && !error && status != PGRES_PIPELINE_ABORTED) error = failure(raw);
    if (!ok && !error) error = Error{Errc::io, "database: a pipelined statement was skipped"};
    if (s.prepare) {
      if (ok) prepared_.emplace(*s.sql, s.name);
      PQclear(raw);
    } else if (ok) {
      out.emplace_back(raw);
    } else {
      PQclear(raw);
    }
    while (PGresult* extra = PQgetResult(conn_)) PQclear(extra);  // the command's terminating null
  }
  // The sync's result, then out of pipeline mode.
  for (int guard = 0; guard < 4; ++guard) {
    PGresult* raw = PQgetResult(conn_);
    if (raw == nullptr) {
      if (connection_lost()) break;
      continue;
    }
    const bool sync = PQresultStatus(raw) == PGRES_PIPELINE_SYNC;
    PQclear(raw);
    if (sync) break;
  }
  if (PQexitPipelineMode(conn_) != 1 && !error)
    error = Error{Errc::io, "database: " + first_line(PQerrorMessage(conn_))};
  if (error) return *error;
  return out;
}

Result<void> PgConnection::exec_script(std::string_view sql) {
  last_state_.clear();
  if (conn_ == nullptr) return Error{Errc::io, "not connected to PostgreSQL"};
  const std::string text(sql);
  PGresult* result = PQexec(conn_, text.c_str());
  const auto status = result != nullptr ? PQresultStatus(result) : PGRES_FATAL_ERROR;
  std::string why;
  if (status != PGRES_COMMAND_OK && status != PGRES_TUPLES_OK) {
    const char* state = result != nullptr ? PQresultErrorField(result, PG_DIAG_SQLSTATE) : nullptr;
    last_state_ = state != nullptr ? state : "";
    why = first_line(PQerrorMessage(conn_));
  }
  if (result != nullptr) PQclear(result);
  if (!why.empty()) return Error{Errc::io, "database: " + why};
  return Ok{};
}

bool PgConnection::recover(const std::string& why) {
  log(LogLevel::warn, kLog, "lost the PostgreSQL connection (", why,
      "): retrying with backoff for up to ", limits_.outage.count() / 1000, " s");
  const auto started = std::chrono::steady_clock::now();
  auto delay = std::chrono::milliseconds(50);
  while (std::chrono::steady_clock::now() - started < limits_.outage) {
    std::this_thread::sleep_for(delay);
    delay = std::min(delay * 2, std::chrono::milliseconds(1000));
    if (connect()) {
      const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                          std::chrono::steady_clock::now() - started)
                          .count();
      log(LogLevel::info, kLog, "PostgreSQL connection back after ", ms, " ms");
      return true;
    }
  }
  return false;
}

Result<void> PgConnection::run_transaction(const std::function<Result<void>()>& body) {
  int conflicts = 0;
  bool recovered = false;
  for (;;) {
    if (conn_ == nullptr || connection_lost()) {
      if (recovered || (!connect() && !recover("not connected")))
        return Error{Errc::io, "the PostgreSQL database is unreachable"};
    }
    Result<void> outcome = exec_script("BEGIN");
    if (outcome) {
      outcome = body();
      if (outcome) outcome = exec_script("COMMIT");
    }
    if (outcome) return Ok{};
    const std::string state = last_state_;
    if (!connection_lost()) (void)exec_script("ROLLBACK");
    if (connection_lost()) {
      // Nothing was committed (or COMMIT's answer was lost: the body is written to be safe to
      // run again, e.g. a node that joined re-joins as itself).
      if (recovered || !recover(outcome.error().message))
        return Error{Errc::io, "the PostgreSQL database is unreachable: " + outcome.error().message};
      recovered = true;
      continue;
    }
    if (retryable(state) && ++conflicts < limits_.conflicts) continue;
    return outcome.error();
  }
}

}  // namespace knit::coordinator
