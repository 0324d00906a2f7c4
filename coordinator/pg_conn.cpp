#include "coordinator/pg_conn.hpp"

#include <charconv>
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

Result<PgResult> PgConnection::exec(std::string_view sql, const std::vector<PgParam>& params) {
  last_state_.clear();
  if (conn_ == nullptr) return Error{Errc::io, "not connected to PostgreSQL"};
  std::vector<const char*> values;
  values.reserve(params.size());
  for (const PgParam& p : params) values.push_back(p ? p->c_str() : nullptr);
  const std::string text(sql);
  PGresult* raw = PQexecParams(conn_, text.c_str(), static_cast<int>(params.size()), nullptr,
                               values.data(), nullptr, nullptr, 0);
  const auto status = raw != nullptr ? PQresultStatus(raw) : PGRES_FATAL_ERROR;
  if (status == PGRES_COMMAND_OK || status == PGRES_TUPLES_OK) return PgResult(raw);
  const char* state = raw != nullptr ? PQresultErrorField(raw, PG_DIAG_SQLSTATE) : nullptr;
  last_state_ = state != nullptr ? state : "";
  std::string why = first_line(PQerrorMessage(conn_));
  if (raw != nullptr) PQclear(raw);
  return Error{last_state_ == "23505" ? Errc::conflict : Errc::io, "database: " + why};
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
