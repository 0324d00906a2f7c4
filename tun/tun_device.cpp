#include "tun/tun_device.hpp"

#include <fcntl.h>
#include <linux/if_tun.h>
#include <net/if.h>
#include <sys/ioctl.h>
#include <sys/uio.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <utility>

namespace knit::tun {
namespace {

constexpr const char* kClonePath = "/dev/net/tun";

std::string describe(int error) { return std::system_category().message(error); }

// What a person can do about a failure, by errno; empty when there is nothing useful to add.
std::string open_hint(int error) {
  switch (error) {
    case ENOENT:
    case ENODEV:
    case ENXIO:
      return " (load the tun module or run where /dev/net/tun exists)";
    case EACCES:
    case EPERM:
      return " (run as root or with CAP_NET_ADMIN)";
    case EMFILE:
    case ENFILE:
      return " (too many open files: raise the limit on file descriptors)";
    default:
      return "";
  }
}

std::string attach_hint(int error) {
  switch (error) {
    case EACCES:
    case EPERM:
      return " (run as root or with CAP_NET_ADMIN)";
    case EBUSY:
      return " (another process is attached to it: stop it or choose another name)";
    case EINVAL:
      return " (a device of another kind, or a TUN device opened with other flags, has that name:"
             " choose another name)";
    default:
      return "";
  }
}

// The kernel's rule for interface names (dev_valid_name): 1..15 bytes, not "." or "..", no '/',
// ':' or whitespace. Checked here so the message can say which rule was broken.
void check_name(const std::string& name) {
  const auto reject = [&](const std::string& why) {
    throw TunError("invalid TUN device name \"" + name + "\": " + why,
                   std::error_code(EINVAL, std::system_category()));
  };
  if (name.size() >= IFNAMSIZ) reject("longer than " + std::to_string(IFNAMSIZ - 1) + " characters");
  if (name == "." || name == "..") reject("\".\" and \"..\" are not allowed");
  for (const char c : name) {
    if (c == '/' || c == ':' || c == ' ' || (c >= '\t' && c <= '\r')) {
      reject("it must not contain '/', ':' or whitespace");
    }
  }
}

// Opens one queue of the interface; returns the fd and sets name to the kernel's final name.
int attach_queue(std::string& name, bool multi_queue, bool vnet_header, int queue,
                 const std::string& shown_name) {
  const int fd = ::open(kClonePath, O_RDWR | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) {
    const int error = errno;
    throw TunError(std::string("cannot open ") + kClonePath + ": " + describe(error) + open_hint(error),
                   {error, std::system_category()});
  }
  ifreq request{};
  request.ifr_flags = static_cast<short>(IFF_TUN | IFF_NO_PI | (multi_queue ? IFF_MULTI_QUEUE : 0) |
                                         (vnet_header ? IFF_VNET_HDR : 0));
  std::memcpy(request.ifr_name, name.data(), name.size());  // checked shorter than IFNAMSIZ
  if (::ioctl(fd, TUNSETIFF, &request) != 0) {
    const int error = errno;
    ::close(fd);
    const std::string what = queue == 0 ? "cannot create TUN device " + shown_name
                                        : "cannot attach queue " + std::to_string(queue) +
                                              " of TUN device " + shown_name;
    throw TunError(what + ": " + describe(error) + attach_hint(error), {error, std::system_category()});
  }
  name.assign(request.ifr_name, ::strnlen(request.ifr_name, IFNAMSIZ));
  return fd;
}

// The offloads to ask for, most first: a kernel refuses the whole set (EINVAL) if one bit is
// unknown to it (USO came with Linux 6.2).
unsigned set_offloads(int fd) {
  constexpr unsigned kTso = TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6;
#ifdef TUN_F_USO4
  constexpr unsigned kAll = kTso | TUN_F_USO4 | TUN_F_USO6;
#else
  constexpr unsigned kAll = kTso | 0x20 | 0x40;
#endif
  for (const unsigned flags : {kAll, kTso, unsigned{TUN_F_CSUM}}) {
    if (::ioctl(fd, TUNSETOFFLOAD, static_cast<unsigned long>(flags)) == 0) return flags;
  }
  return 0;
}

bool kernel_has_vnet_header() {
  const int fd = ::open(kClonePath, O_RDWR | O_CLOEXEC);
  if (fd < 0) return false;
  unsigned features = 0;
  const bool ok = ::ioctl(fd, TUNGETFEATURES, &features) == 0 && (features & IFF_VNET_HDR) != 0;
  ::close(fd);
  return ok;
}

}  // namespace

TunDevice TunDevice::open(const Options& options) {
  check_name(options.name);
  if (options.queues < 1 || options.queues > kMaxQueues) {
    throw TunError("invalid TUN queue count " + std::to_string(options.queues) + ": it must be 1 to " +
                       std::to_string(kMaxQueues),
                   std::error_code(EINVAL, std::system_category()));
  }
  const std::string shown_name = options.name.empty() ? "(kernel-chosen name)" : options.name;
  const bool multi_queue = options.queues > 1;

  // The first queue creates the interface and fixes its name ("%d" resolved); the others
  // attach to that name. A TunDevice made from the fds so far closes them if a later one fails.
  std::string name = options.name;
  TunDevice device(name, {}, 0);
  device.fds_.reserve(static_cast<std::size_t>(options.queues));
  device.vnet_header_ = options.offloads && kernel_has_vnet_header();
  for (int queue = 0; queue < options.queues; ++queue) {
    device.fds_.push_back(
        attach_queue(name, multi_queue, device.vnet_header_, queue, queue == 0 ? shown_name : name));
    device.name_ = name;
  }
  if (device.vnet_header_) device.offloads_ = set_offloads(device.fds_[0]);
  device.ifindex_ = static_cast<int>(::if_nametoindex(device.name_.c_str()));
  if (device.ifindex_ == 0) {
    const int error = errno;
    throw TunError("cannot find the index of TUN device " + device.name_ + ": " + describe(error),
                   {error, std::system_category()});
  }
  return device;
}

TunDevice TunDevice::adopt(std::string name, int fd, bool vnet_header) {
  TunDevice device(std::move(name), {fd}, 0);
  device.vnet_header_ = vnet_header;
  return device;
}

TunDevice::TunDevice(std::string name, std::vector<int> fds, int ifindex)
    : name_(std::move(name)), fds_(std::move(fds)), ifindex_(ifindex) {}

TunDevice::TunDevice(TunDevice&& other) noexcept
    : name_(std::move(other.name_)),
      fds_(std::exchange(other.fds_, {})),
      ifindex_(std::exchange(other.ifindex_, 0)),
      vnet_header_(std::exchange(other.vnet_header_, false)),
      offloads_(std::exchange(other.offloads_, 0)) {}

TunDevice& TunDevice::operator=(TunDevice&& other) noexcept {
  if (this != &other) {
    close_all();
    name_ = std::move(other.name_);
    fds_ = std::exchange(other.fds_, {});
    ifindex_ = std::exchange(other.ifindex_, 0);
    vnet_header_ = std::exchange(other.vnet_header_, false);
    offloads_ = std::exchange(other.offloads_, 0);
  }
  return *this;
}

TunDevice::~TunDevice() { close_all(); }

void TunDevice::close_all() noexcept {
  for (const int fd : fds_) ::close(fd);
  fds_.clear();
}

int TunDevice::fd(int queue) const {
  if (queue < 0 || queue >= queue_count()) return -1;
  return fds_[static_cast<std::size_t>(queue)];
}

long TunDevice::read(int queue, std::span<std::uint8_t> buffer) {
  const int descriptor = fd(queue);
  if (descriptor < 0) return -EBADF;
  for (;;) {
    const auto n = ::read(descriptor, buffer.data(), buffer.size());
    if (n >= 0) return static_cast<long>(n);
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) return 0;
    return -errno;
  }
}

bool TunDevice::write(int queue, std::span<const std::uint8_t> packet) {
  const int descriptor = fd(queue);
  if (descriptor < 0) return false;
  for (;;) {
    const auto n = ::write(descriptor, packet.data(), packet.size());
    if (n >= 0) return static_cast<std::size_t>(n) == packet.size();
    if (errno != EINTR) return false;
  }
}

bool TunDevice::write(int queue, std::span<const std::uint8_t> header,
                      std::span<const std::uint8_t> packet) {
  const int descriptor = fd(queue);
  if (descriptor < 0) return false;
  iovec parts[2] = {{const_cast<std::uint8_t*>(header.data()), header.size()},
                    {const_cast<std::uint8_t*>(packet.data()), packet.size()}};
  for (;;) {
    const auto n = ::writev(descriptor, parts, 2);
    if (n >= 0) return static_cast<std::size_t>(n) == header.size() + packet.size();
    if (errno != EINTR) return false;
  }
}

}  // namespace knit::tun
