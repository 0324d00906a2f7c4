// systemd_notify: the datagram reaches a socket named by $NOTIFY_SOCKET (a path or an abstract
// name), nothing is sent without it, and an unusable value is reported, never crashes.
#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstddef>
#include <cstring>
#include <optional>
#include <string>

#include "net/systemd_notify.hpp"
#include "tests/support/temp_dir.hpp"

namespace knit::net {
namespace {

// $NOTIFY_SOCKET set for one test, and restored after it.
class NotifySocketEnv {
 public:
  explicit NotifySocketEnv(const std::optional<std::string>& value) {
    if (const char* old = std::getenv("NOTIFY_SOCKET")) old_ = old;
    if (value)
      ::setenv("NOTIFY_SOCKET", value->c_str(), 1);
    else
      ::unsetenv("NOTIFY_SOCKET");
  }
  ~NotifySocketEnv() {
    if (old_)
      ::setenv("NOTIFY_SOCKET", old_->c_str(), 1);
    else
      ::unsetenv("NOTIFY_SOCKET");
  }

 private:
  std::optional<std::string> old_;
};

// A datagram socket bound to `name` (a path, or '@' + an abstract name), as systemd's.
class Listener {
 public:
  explicit Listener(const std::string& name) {
    fd_ = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    sockaddr_un address{};
    address.sun_family = AF_UNIX;
    std::memcpy(address.sun_path, name.data(), name.size());
    if (name[0] == '@') address.sun_path[0] = '\0';
    const auto size = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + name.size() +
                                             (name[0] == '@' ? 0 : 1));
    bound_ = ::bind(fd_, reinterpret_cast<const sockaddr*>(&address), size) == 0;
  }
  ~Listener() { ::close(fd_); }
  bool bound() const { return bound_; }
  // The next datagram, or nothing if none is waiting.
  std::optional<std::string> receive() {
    char buffer[256];
    const ssize_t n = ::recv(fd_, buffer, sizeof buffer, MSG_DONTWAIT);
    if (n < 0) return std::nullopt;
    return std::string(buffer, static_cast<std::size_t>(n));
  }

 private:
  int fd_ = -1;
  bool bound_ = false;
};

TEST(SystemdNotify, SendsToAPathSocket) {
  testing::TempDir dir;
  const std::string path = (dir.path() / "notify").string();
  Listener listener(path);
  ASSERT_TRUE(listener.bound());
  NotifySocketEnv env(path);
  EXPECT_EQ(systemd_notify("READY=1"), NotifyResult::sent);
  EXPECT_EQ(listener.receive(), "READY=1");
  EXPECT_EQ(systemd_notify("STOPPING=1\nSTATUS=bye"), NotifyResult::sent);
  EXPECT_EQ(listener.receive(), "STOPPING=1\nSTATUS=bye");
}

TEST(SystemdNotify, SendsToAnAbstractSocket) {
  const std::string name = "@knit-notify-test-" + std::to_string(::getpid());
  Listener listener(name);
  ASSERT_TRUE(listener.bound());
  NotifySocketEnv env(name);
  EXPECT_EQ(systemd_notify("READY=1"), NotifyResult::sent);
  EXPECT_EQ(listener.receive(), "READY=1");
}

TEST(SystemdNotify, DoesNothingOutsideSystemd) {
  NotifySocketEnv unset(std::nullopt);
  EXPECT_EQ(systemd_notify("READY=1"), NotifyResult::not_under_systemd);
  NotifySocketEnv empty(std::string{});
  EXPECT_EQ(systemd_notify("READY=1"), NotifyResult::not_under_systemd);
}

TEST(SystemdNotify, ReportsAnUnusableSocket) {
  testing::TempDir dir;
  {
    NotifySocketEnv relative(std::string("notify"));  // neither a path nor abstract
    EXPECT_EQ(systemd_notify("READY=1"), NotifyResult::failed);
  }
  {
    NotifySocketEnv too_long("/" + std::string(200, 'x'));
    EXPECT_EQ(systemd_notify("READY=1"), NotifyResult::failed);
  }
  {
    NotifySocketEnv missing((dir.path() / "nobody-listens").string());
    EXPECT_EQ(systemd_notify("READY=1"), NotifyResult::failed);
  }
}

}  // namespace
}  // namespace knit::net
