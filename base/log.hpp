// Leveled, one-line-per-event logging to stderr (journald adds the time). Never log secrets.
#pragma once

#include <sstream>
#include <string>
#include <string_view>

namespace knit {

enum class LogLevel { debug = 0, info = 1, warn = 2, error = 3 };

void set_log_level(LogLevel level);
LogLevel log_level();
bool parse_log_level(std::string_view text, LogLevel& out);
void log_line(LogLevel level, std::string_view component, std::string_view message);

template <typename... Args>
void log(LogLevel level, std::string_view component, const Args&... args) {
  if (level < log_level()) return;
  std::ostringstream out;
  (out << ... << args);
  log_line(level, component, out.str());
}

}  // namespace knit
