#include "cli/client.hpp"

#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <algorithm>
#include <cstring>

namespace knit::cli {

namespace {

using SteadyClock = std::chrono::steady_clock;

int remaining_ms(SteadyClock::time_point deadline) {
  const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - SteadyClock::now()).count();
  return left <= 0 ? 0 : static_cast<int>(std::min<long long>(left, 1 << 30));
}

std::string not_running(const std::string& path) {
  std::string text = "knitd is not running: start it with `systemctl start knitd` or run `knitd`";
  if (path != kDefaultControlSocket) text += " (nothing answers at " + path + ")";
  return text;
}

}  // namespace

KnitdConnection::KnitdConnection(std::string socket_path) : path_(std::move(socket_path)) {
  sockaddr_un address{};
  if (path_.empty() || path_.size() >= sizeof address.sun_path)
    throw CliError("the control socket path is empty or too long: " + path_);
  fd_ = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd_ < 0) throw CliError(std::string("cannot create a unix socket: ") + std::strerror(errno));
  address.sun_family = AF_UNIX;
  std::memcpy(address.sun_path, path_.data(), path_.size());
  if (::connect(fd_, reinterpret_cast<const sockaddr*>(&address), sizeof address) != 0) {
    const int error = errno;
    ::close(fd_);
    fd_ = -1;
    if (error == ENOENT || error == ECONNREFUSED || error == ENOTDIR) throw CliError(not_running(path_));
    if (error == EACCES || error == EPERM)
      throw CliError("permission denied on " + path_ + ": run knit as root (sudo knit ...)");
    throw CliError("cannot connect to knitd at " + path_ + ": " + std::strerror(error));
  }
}

KnitdConnection::~KnitdConnection() {
  if (fd_ >= 0) ::close(fd_);
}

void KnitdConnection::send_line(const std::string& line, SteadyClock::time_point deadline) {
  std::size_t sent = 0;
  while (sent < line.size()) {
    pollfd p{fd_, POLLOUT, 0};
    const int ready = ::poll(&p, 1, remaining_ms(deadline));
    if (ready < 0 && errno == EINTR) continue;
    if (ready == 0) throw CliError("knitd does not take requests (timed out): is it stuck?");
    const ssize_t n = ::send(fd_, line.data() + sent, line.size() - sent, MSG_NOSIGNAL);
    if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
    if (n <= 0) throw CliError(std::string("lost the connection to knitd: ") + std::strerror(errno));
    sent += static_cast<std::size_t>(n);
  }
}

std::string KnitdConnection::read_line(SteadyClock::time_point deadline, std::chrono::milliseconds timeout) {
  char chunk[16384];
  for (;;) {
    const auto newline = buffer_.find('\n');
    if (newline != std::string::npos) {
      std::string line = buffer_.substr(0, newline);
      buffer_.erase(0, newline + 1);
      return line;
    }
    if (buffer_.size() > localapi::kMaxResponseLine) throw CliError("knitd's answer is too long");
    pollfd p{fd_, POLLIN, 0};
    const int ready = ::poll(&p, 1, remaining_ms(deadline));
    if (ready < 0 && errno == EINTR) continue;
    if (ready == 0)
      throw CliError("knitd did not answer within " +
                     std::to_string(std::chrono::duration_cast<std::chrono::seconds>(timeout).count()) +
                     " s: see its log (journalctl -u knitd)");
    const ssize_t n = ::recv(fd_, chunk, sizeof chunk, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n == 0) throw CliError("knitd closed the connection without answering: see its log (journalctl -u knitd)");
    if (n < 0) throw CliError(std::string("lost the connection to knitd: ") + std::strerror(errno));
    buffer_.append(chunk, static_cast<std::size_t>(n));
  }
}

localapi::ControlResponse KnitdConnection::call(const localapi::ControlRequest& request, std::chrono::milliseconds timeout) {
  const auto deadline = SteadyClock::now() + timeout;
  std::string line = localapi::encode_request(request) + "\n";
  send_line(line, deadline);
  std::fill(line.begin(), line.end(), '\0');  // may hold a join token
  auto parsed = localapi::parse_response(read_line(deadline, timeout));
  if (auto* error = std::get_if<localapi::ProtocolError>(&parsed)) throw CliError(error->message);
  return std::move(std::get<localapi::ControlResponse>(parsed));
}

}  // namespace knit::cli
