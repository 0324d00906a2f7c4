// A Linux TUN interface (/dev/net/tun, IFF_TUN | IFF_NO_PI): each read or write is one raw
// IPv4 or IPv6 packet, with no packet-information header in front.
//
// The interface is not persistent: it lives exactly as long as its file descriptors, so the
// kernel removes it when the TunDevice is destroyed (or the process dies).
#pragma once

#include <cstdint>
#include <span>
#include <stdexcept>
#include <string>
#include <system_error>
#include <vector>

namespace knit::tun {

// Opening failed; what() is one line saying what failed, why, and what to do about it.
// code() is the errno behind it (system_category), when there is one.
class TunError : public std::runtime_error {
 public:
  explicit TunError(const std::string& message, std::error_code code = {})
      : std::runtime_error(message), code_(code) {}
  std::error_code code() const { return code_; }

 private:
  std::error_code code_;
};

class TunDevice {
 public:
  // The kernel's limit on the queues of one multi-queue TUN (MAX_TAP_QUEUES).
  static constexpr int kMaxQueues = 256;

  struct Options {
    std::string name;  // up to 15 bytes; may contain "%d" ("knit%d"); empty: the kernel's "tun%d"
    int queues = 1;    // >1 uses IFF_MULTI_QUEUE, one fd per queue
  };

  // Opens (creates) the interface; throws TunError.
  static TunDevice open(const Options& options);
  // A stand-in for tests: one queue over a descriptor that keeps packet boundaries (one end of a
  // SOCK_SEQPACKET socketpair), owned from now on. No interface exists; ifindex() is 0.
  static TunDevice adopt(std::string name, int fd);

  TunDevice(TunDevice&& other) noexcept;
  TunDevice& operator=(TunDevice&& other) noexcept;
  TunDevice(const TunDevice&) = delete;
  TunDevice& operator=(const TunDevice&) = delete;
  ~TunDevice();  // closes every fd: the kernel then deletes the interface

  const std::string& name() const { return name_; }  // the kernel's final name
  int queue_count() const { return static_cast<int>(fds_.size()); }
  int fd(int queue = 0) const;  // non-blocking, close-on-exec; -1 for a queue that does not exist
  int ifindex() const { return ifindex_; }

  // One packet each. read returns the packet's size, 0 when no packet is ready, -errno on error
  // (a packet longer than the buffer is cut short). write returns false when the packet was not
  // taken (EAGAIN when the queue is full, EIO while the link is down, EINVAL for a packet that
  // is neither IPv4 nor IPv6): callers count drops.
  long read(int queue, std::span<std::uint8_t> buffer);
  bool write(int queue, std::span<const std::uint8_t> packet);

 private:
  TunDevice(std::string name, std::vector<int> fds, int ifindex);
  void close_all() noexcept;

  std::string name_;
  std::vector<int> fds_;
  int ifindex_ = 0;
};

}  // namespace knit::tun
