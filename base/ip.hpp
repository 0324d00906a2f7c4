// IP addresses and UDP endpoints as plain values (no sockets here).
#pragma once

#include <array>
#include <compare>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

struct sockaddr;
struct sockaddr_storage;

namespace knit {

class IpAddress {
 public:
  enum class Family : std::uint8_t { v4 = 4, v6 = 6 };

  IpAddress() = default;  // 0.0.0.0
  static IpAddress v4(std::uint32_t host_order);
  static IpAddress v4(const std::uint8_t bytes[4]);
  static IpAddress v6(const std::uint8_t bytes[16]);
  static std::optional<IpAddress> parse(std::string_view text);

  Family family() const { return family_; }
  bool is_v4() const { return family_ == Family::v4; }
  bool is_v6() const { return family_ == Family::v6; }
  // Network-order bytes: 4 for v4, 16 for v6.
  const std::uint8_t* bytes() const { return bytes_.data(); }
  std::size_t size() const { return is_v4() ? 4 : 16; }
  std::uint32_t v4_host_order() const;
  bool is_unspecified() const;
  std::string to_string() const;

  friend auto operator<=>(const IpAddress&, const IpAddress&) = default;

 private:
  Family family_ = Family::v4;
  std::array<std::uint8_t, 16> bytes_{};
};

class Endpoint {
 public:
  Endpoint() = default;
  Endpoint(IpAddress address, std::uint16_t port) : address_(address), port_(port) {}
  // "1.2.3.4:51820" or "[fd00::1]:51820".
  static std::optional<Endpoint> parse(std::string_view text);
  static std::optional<Endpoint> from_sockaddr(const sockaddr* sa);

  const IpAddress& address() const { return address_; }
  std::uint16_t port() const { return port_; }
  // The local address a datagram from this endpoint arrived on. Replies leave from it, because
  // that is the address the remote (and any NAT in between) expects to hear from. Unset for an
  // endpoint configured by hand: then the kernel picks the source.
  const std::optional<IpAddress>& local() const { return local_; }
  void set_local(std::optional<IpAddress> local) { local_ = local; }
  bool same_remote(const Endpoint& other) const {
    return address_ == other.address_ && port_ == other.port_;
  }
  bool empty() const { return port_ == 0 && address_.is_unspecified(); }
  std::string to_string() const;
  // Fills ss and returns the sockaddr length to pass to the kernel.
  unsigned to_sockaddr(sockaddr_storage& ss) const;

  friend auto operator<=>(const Endpoint&, const Endpoint&) = default;

 private:
  IpAddress address_;
  std::uint16_t port_ = 0;
  std::optional<IpAddress> local_;
};

struct IpPrefix {
  IpAddress address;
  std::uint8_t length = 0;
  // "10.0.0.0/24", "fd00::/64"; a bare address means a host prefix.
  static std::optional<IpPrefix> parse(std::string_view text);
  std::string to_string() const;
  friend auto operator<=>(const IpPrefix&, const IpPrefix&) = default;
};

}  // namespace knit
