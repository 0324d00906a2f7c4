#include "net/sysctl.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>

namespace knit::net {
namespace {

std::string path_of(const std::string& key) { return "/proc/sys/" + key; }

}  // namespace

std::optional<std::string> read_sysctl(const std::string& key) {
  if (key.find("..") != std::string::npos) return std::nullopt;
  const int fd = ::open(path_of(key).c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return std::nullopt;
  char buffer[256];
  const ssize_t n = ::read(fd, buffer, sizeof buffer);
  ::close(fd);
  if (n < 0) return std::nullopt;
  std::string value(buffer, static_cast<std::size_t>(n));
  while (!value.empty() && (value.back() == '\n' || value.back() == ' ')) value.pop_back();
  return value;
}

std::error_code write_sysctl(const std::string& key, const std::string& value) {
  if (key.find("..") != std::string::npos) return {EINVAL, std::system_category()};
  const int fd = ::open(path_of(key).c_str(), O_WRONLY | O_CLOEXEC);
  if (fd < 0) return {errno, std::system_category()};
  const std::string line = value + "\n";
  const ssize_t n = ::write(fd, line.data(), line.size());
  const int saved = errno;
  ::close(fd);
  if (n < 0) return {saved, std::system_category()};
  if (static_cast<std::size_t>(n) != line.size()) return {EIO, std::system_category()};
  return {};
}

}  // namespace knit::net
