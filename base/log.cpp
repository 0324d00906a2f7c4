#include "base/log.hpp"

#include <atomic>
#include <cstdio>

namespace knit {

namespace {
std::atomic<LogLevel> g_level{LogLevel::info};
constexpr const char* kNames[] = {"debug", "info", "warn", "error"};
}  // namespace

void set_log_level(LogLevel level) { g_level = level; }
LogLevel log_level() { return g_level; }

bool parse_log_level(std::string_view text, LogLevel& out) {
  for (int i = 0; i < 4; ++i) {
    if (text == kNames[i]) {
      out = static_cast<LogLevel>(i);
      return true;
    }
  }
  return false;
}

void log_line(LogLevel level, std::string_view component, std::string_view message) {
  // One write per line so lines from concurrent writers never interleave.
  std::string line;
  line.reserve(message.size() + component.size() + 16);
  line.append(kNames[static_cast<int>(level)]).append(" ").append(component).append(": ");
  line.append(message).append("\n");
  std::fwrite(line.data(), 1, line.size(), stderr);
}

}  // namespace knit
