// A GoogleTest fixture that runs each test in a fresh network namespace of its own
// (unshare(CLONE_NEWNET) in SetUp, back to the original in TearDown): the host's network is never
// touched, and every interface a test makes vanishes with the namespace. Skips, saying why, only
// where the machine lacks the capability.
#pragma once

#include <fcntl.h>
#include <sched.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <string>

namespace knit::testing {

inline bool has_capability(int capability) {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("CapEff:", 0) == 0) {
      const auto mask = std::stoull(line.substr(7), nullptr, 16);
      return (mask >> capability) & 1;
    }
  }
  return false;
}

class PrivateNetns : public ::testing::Test {
 protected:
  static constexpr int kCapNetAdmin = 12;  // linux/capability.h
  static constexpr int kCapSysAdmin = 21;

  void SetUp() override {
    if (!has_capability(kCapNetAdmin)) GTEST_SKIP() << "needs CAP_NET_ADMIN (run as root)";
    if (!has_capability(kCapSysAdmin))
      GTEST_SKIP() << "needs CAP_SYS_ADMIN to create a private network namespace (run as root)";
    if (::access("/dev/net/tun", R_OK | W_OK) != 0)
      GTEST_SKIP() << "needs /dev/net/tun (load the tun module)";
    original_ = ::open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
    ASSERT_GE(original_, 0) << std::strerror(errno);
    ASSERT_EQ(::unshare(CLONE_NEWNET), 0) << std::strerror(errno);
  }
  void TearDown() override {
    if (original_ < 0) return;
    EXPECT_EQ(::setns(original_, CLONE_NEWNET), 0) << std::strerror(errno);
    ::close(original_);
  }

 private:
  int original_ = -1;
};

}  // namespace knit::testing
