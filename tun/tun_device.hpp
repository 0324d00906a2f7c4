// A Linux TUN interface (/dev/net/tun, IFF_TUN | IFF_NO_PI): each read or write is one raw
// IPv4 or IPv6 packet, with no packet-information header in front.
//
// With offloads (Options::offloads), the interface is opened with IFF_VNET_HDR and every read
// and write carries a 10-byte virtio-net header first (tun/offload.hpp); TUNSETOFFLOAD then
// lets the kernel hand over unfinished checksums and TCP/UDP super-packets of up to 64 KiB
// (CSUM, TSO4/6, USO4/6, whichever the kernel has), and writes may carry coalesced TCP
// super-packets. A kernel without IFF_VNET_HDR or TUNSETOFFLOAD leaves the plain mode.
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
    bool offloads = false;  // IFF_VNET_HDR + TUNSETOFFLOAD, where the kernel has them
  };
  // TUN_F_* bits the kernel accepted (linux/if_tun.h); 0 without offloads.
  static constexpr unsigned kOffloadCsum = 0x01, kOffloadTso4 = 0x02, kOffloadTso6 = 0x04,
                            kOffloadUso4 = 0x20, kOffloadUso6 = 0x40;

  // Opens (creates) the interface; throws TunError.
  static TunDevice open(const Options& options);
  // A stand-in for tests: one queue over a descriptor that keeps packet boundaries (one end of a
  // SOCK_SEQPACKET socketpair), owned from now on. No interface exists; ifindex() is 0.
  // With vnet_header, the descriptor's packets carry a virtio-net header as an offloading TUN's.
  static TunDevice adopt(std::string name, int fd, bool vnet_header = false);

  TunDevice(TunDevice&& other) noexcept;
  TunDevice& operator=(TunDevice&& other) noexcept;
  TunDevice(const TunDevice&) = delete;
  TunDevice& operator=(const TunDevice&) = delete;
  ~TunDevice();  // closes every fd: the kernel then deletes the interface

  const std::string& name() const { return name_; }  // the kernel's final name
  int queue_count() const { return static_cast<int>(fds_.size()); }
  int fd(int queue = 0) const;  // non-blocking, close-on-exec; -1 for a queue that does not exist
  int ifindex() const { return ifindex_; }
  // Every read and write carries a virtio-net header (tun/offload.hpp).
  bool vnet_header() const { return vnet_header_; }
  unsigned offloads() const { return offloads_; }

  // One packet each. read returns the packet's size, 0 when no packet is ready, -errno on error
  // (a packet longer than the buffer is cut short). write returns false when the packet was not
  // taken (EAGAIN when the queue is full, EIO while the link is down, EINVAL for a packet that
  // is neither IPv4 nor IPv6): callers count drops.
  long read(int queue, std::span<std::uint8_t> buffer);
  bool write(int queue, std::span<const std::uint8_t> packet);
  // With a virtio-net header: the header's 10 bytes and the packet, in one writev.
  bool write(int queue, std::span<const std::uint8_t> header, std::span<const std::uint8_t> packet);

 private:
  TunDevice(std::string name, std::vector<int> fds, int ifindex);
  void close_all() noexcept;

  std::string name_;
  std::vector<int> fds_;
  int ifindex_ = 0;
  bool vnet_header_ = false;
  unsigned offloads_ = 0;
};

}  // namespace knit::tun
