#include "coordinator/sqlite_change_feed.hpp"

#include <sys/inotify.h>

#include <array>
#include <cerrno>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <stdexcept>

#include "base/log.hpp"

namespace knit::coordinator {

namespace {

constexpr std::string_view kLog = "coordinator";
constexpr auto kRecheck = std::chrono::milliseconds(100);
constexpr auto kTrimEvery = std::chrono::minutes(1);
constexpr UnixSeconds kKeepNotes = 10 * 60;

}  // namespace

SqliteChangeFeed::SqliteChangeFeed(asio::io_context& io, SqliteStore& store)
    : io_(io), store_(store), inotify_(io), recheck_(io), trim_(io) {}

SqliteChangeFeed::~SqliteChangeFeed() { stop(); }

void SqliteChangeFeed::start(Handler handler) {
  handler_ = std::move(handler);
  const int fd = ::inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
  if (fd < 0) throw std::runtime_error(std::string("inotify: ") + std::strerror(errno));
  inotify_.assign(fd);
  // The directory, not the files: the WAL is created and removed as connections come and go.
  const std::string dir = std::filesystem::path(store_.path()).parent_path().string();
  if (::inotify_add_watch(fd, dir.empty() ? "." : dir.c_str(),
                          IN_MODIFY | IN_CLOSE_WRITE | IN_CREATE | IN_MOVED_TO) < 0)
    throw std::runtime_error("cannot watch " + dir + ": " + std::strerror(errno));
  if (auto v = store_.data_version()) data_version_ = *v;
  if (auto latest = store_.latest_change()) cursor_ = *latest;
  wait();
  arm_trim();
}

void SqliteChangeFeed::arm_trim() {
  trim_.expires_after(kTrimEvery);
  trim_.async_wait([this, alive = std::weak_ptr<char>(alive_)](std::error_code ec) {
    if (ec || alive.expired() || stopped_) return;
    const auto before = static_cast<UnixSeconds>(std::time(nullptr)) - kKeepNotes;
    if (auto r = store_.trim_changes(before); !r)
      log(LogLevel::warn, kLog, "cannot trim the change log: ", r.error().message);
    arm_trim();
  });
}

void SqliteChangeFeed::stop() {
  if (stopped_) return;
  stopped_ = true;
  std::error_code ignored;
  inotify_.close(ignored);
  recheck_.cancel();
  trim_.cancel();
}

void SqliteChangeFeed::wait() {
  inotify_.async_wait(asio::posix::stream_descriptor::wait_read,
                      [this, alive = std::weak_ptr<char>(alive_)](std::error_code ec) {
                        if (alive.expired()) return;
                        on_event(ec);
                      });
}

void SqliteChangeFeed::on_event(std::error_code ec) {
  if (stopped_ || ec == asio::error::operation_aborted) return;
  if (ec) {
    log(LogLevel::warn, kLog, "the database watch failed: ", ec.message());
    return;
  }
  // Drain the events: which file does not matter, only that something was written.
  alignas(inotify_event) std::array<char, 4096> buffer;
  while (::read(inotify_.native_handle(), buffer.data(), buffer.size()) > 0) {
  }
  look();
  arm_recheck();
  wait();
}

void SqliteChangeFeed::arm_recheck() {
  if (recheck_armed_) return;
  recheck_armed_ = true;
  recheck_.expires_after(kRecheck);
  recheck_.async_wait([this, alive = std::weak_ptr<char>(alive_)](std::error_code ec) {
    if (ec || alive.expired() || stopped_) return;
    recheck_armed_ = false;
    look();
  });
}

void SqliteChangeFeed::look() {
  auto version = store_.data_version();
  if (!version) {
    log(LogLevel::warn, kLog, "cannot read the database: ", version.error().message);
    return;
  }
  if (*version == data_version_) return;  // only our own commits
  data_version_ = *version;
  std::vector<StoreChange> changes;
  for (;;) {
    const std::uint64_t before = cursor_;
    auto batch = store_.changes_after(cursor_);
    if (!batch) {
      log(LogLevel::warn, kLog, "cannot read the change log: ", batch.error().message);
      handler_({}, /*resync=*/true);
      return;
    }
    changes.insert(changes.end(), batch->begin(), batch->end());
    if (cursor_ == before) break;
  }
  if (!changes.empty()) handler_(std::move(changes), false);
}

std::unique_ptr<ChangeFeed> make_sqlite_change_feed(asio::io_context& io, SqliteStore& store) {
  return std::make_unique<SqliteChangeFeed>(io, store);
}

}  // namespace knit::coordinator
