#include "base/socket_mark.hpp"

#include <sys/socket.h>

#include <atomic>

namespace knit {

namespace {
std::atomic<std::uint32_t> g_mark{0};
}

void set_underlay_mark(std::uint32_t mark) { g_mark.store(mark, std::memory_order_relaxed); }

std::uint32_t underlay_mark() { return g_mark.load(std::memory_order_relaxed); }

bool mark_underlay_socket(int fd) {
  const std::uint32_t mark = underlay_mark();
  if (mark == 0 || fd < 0) return true;
  return ::setsockopt(fd, SOL_SOCKET, SO_MARK, &mark, sizeof mark) == 0;
}

}  // namespace knit
