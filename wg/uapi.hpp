// The WireGuard cross-platform configuration protocol ("UAPI"), as wireguard-go speaks it on
// /var/run/wireguard/<interface>.sock, so that stock `wg` can show and configure knitd.
// https://www.wireguard.com/xplatform/#configuration-protocol
//
// This file is the codec only: it does no I/O (the socket is in uapi_server.hpp).
//
// Wire format (ASCII lines, each "key=value\n"; keys lowercase; 32-byte keys in lowercase hex):
//
//   get:  client  "get=1\n" "\n"
//         server  ["private_key=<hex>\n"]            only if a key is set
//                 ["listen_port=<u16>\n"]            only if nonzero
//                 ["fwmark=<u32>\n"]                 only if nonzero
//                 per peer:
//                   "public_key=<hex>\n" "preshared_key=<hex>\n" "protocol_version=1\n"
//                   ["endpoint=<a.b.c.d:port | [v6]:port>\n"]
//                   "last_handshake_time_sec=<s>\n" "last_handshake_time_nsec=<ns>\n"
//                   "tx_bytes=<n>\n" "rx_bytes=<n>\n" "persistent_keepalive_interval=<s>\n"
//                   "allowed_ip=<prefix>\n" ...      one per prefix
//                 "errno=0\n" "\n"
//
//   set:  client  "set=1\n"
//                 device keys:  private_key=<hex> (all zero: remove)  listen_port=<u16>
//                               fwmark=<u32> (0: remove)  replace_peers=true
//                 "public_key=<hex>\n" starts a peer section; then for that peer:
//                               remove=true  update_only=true  preshared_key=<hex> (zero: clear)
//                               endpoint=<ip:port>  persistent_keepalive_interval=<0..65535>
//                               replace_allowed_ips=true  allowed_ip=<prefix>  protocol_version=1
//                 "\n"
//         server  "errno=<0 or negative errno>\n" "\n"
//
// What stock `wg` (wireguard-tools 1.0.20210914) sends, captured from the tool:
//   `wg set`  always writes "replace_allowed_ips=true" before the allowed_ip lines when
//             allowed-ips is given; `wg setconf` adds "replace_peers=true" after the device keys;
//             `wg syncconf` sends "remove=true" sections for the peers missing from the file;
//             `preshared-key /dev/null`, `private-key /dev/null` send 64 zeros; `fwmark off` "0".
//   Each `wg` command first connects and closes without a byte (a liveness probe).
//
// Errors, as wireguard-go answers them: a line without '=' is -EPROTO (-71); an unknown key, a
// malformed value, a peer key before any public_key, protocol_version other than 1, or
// "get=1\n" not followed by an empty line are -EINVAL (-22). Unlike wireguard-go, which drops the
// connection on an unknown operation line and cannot resynchronise after a failed set, this
// parser answers -EINVAL and skips to the blank line that ends the request, so pipelined
// requests keep working. Size limits answer -EMSGSIZE (-90).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "base/ip.hpp"
#include "wg/keys.hpp"

namespace knit::wg {

// Bounds on hostile input from the socket.
inline constexpr std::size_t kUapiMaxLineBytes = 4096;               // excluding the '\n'
inline constexpr std::size_t kUapiMaxRequestBytes = 16 * 1024 * 1024;
inline constexpr std::size_t kUapiMaxPeers = 100000;                  // per set request
inline constexpr std::size_t kUapiMaxAllowedIps = 1000000;            // per set request

// Answers, as negative errno values (Linux numbering, which `wg` prints with strerror).
inline constexpr int kUapiErrorInvalid = -22;   // -EINVAL
inline constexpr int kUapiErrorProtocol = -71;  // -EPROTO
inline constexpr int kUapiErrorTooLarge = -90;  // -EMSGSIZE
inline constexpr int kUapiErrorIo = -5;         // -EIO
inline constexpr int kUapiErrorPortInUse = -98; // -EADDRINUSE (for the daemon's listen_port)

struct UapiPeerSet {
  wg::PublicKey public_key{};
  // The net effect of the section is "remove the peer"; the other fields are then meaningless.
  bool remove = false;
  // Change the peer only if it exists; never create it.
  bool update_only = false;
  std::optional<wg::PresharedKey> preshared_key;  // all-zero = clear
  std::optional<Endpoint> endpoint;
  std::optional<std::uint16_t> persistent_keepalive_interval;
  // Drop the peer's current allowed IPs before adding allowed_ips. allowed_ip lines that came
  // before replace_allowed_ips in the same section are already dropped here by the parser.
  bool replace_allowed_ips = false;
  // Host bits are masked off ("10.0.0.5/24" arrives as 10.0.0.0/24), as wireguard-go's trie does.
  std::vector<IpPrefix> allowed_ips;
};

struct UapiSet {
  std::optional<wg::PrivateKey> private_key;  // all-zero = remove the key
  std::optional<std::uint16_t> listen_port;
  std::optional<std::uint32_t> fwmark;        // 0 = remove the mark
  bool replace_peers = false;                 // remove every peer before applying `peers`
  // In request order. The same public key may appear in more than one section; apply them in
  // order. wireguard-go ignores a section whose key is the device's own public key.
  std::vector<UapiPeerSet> peers;
};

struct UapiPeerState {
  wg::PublicKey public_key{};
  wg::PresharedKey preshared_key;
  std::optional<Endpoint> endpoint;
  std::int64_t last_handshake_sec = 0, last_handshake_nsec = 0;  // Unix time; 0 = never
  std::uint64_t rx_bytes = 0, tx_bytes = 0;
  std::uint16_t persistent_keepalive_interval = 0;
  std::vector<IpPrefix> allowed_ips;
};

struct UapiDeviceState {
  std::optional<wg::PrivateKey> private_key;  // absent or all-zero: not printed
  std::uint16_t listen_port = 0;              // the bound port; 0: not printed
  std::uint32_t fwmark = 0;                   // 0: not printed
  std::vector<UapiPeerState> peers;
};

// The full answer to a get, including the final "errno=0\n\n". The string holds the private key
// in hex: wipe it (sodium_memzero) once written.
std::string format_get(const UapiDeviceState& state);
// "errno=<value>\n\n".
std::string format_errno(int errno_value);

// Incremental parser for one connection's byte stream. Feed bytes as they arrive and call next()
// until it answers NeedMore; each Get, Set and Error answers exactly one request, in order.
class UapiParser {
 public:
  struct NeedMore {};
  struct Get {};
  struct Set {
    UapiSet request;
  };
  // Negative errno. The parser then skips to the blank line that ends that request so the
  // connection can continue — unless fatal() is set, after which next() only answers NeedMore.
  struct Error {
    int errno_value;
  };
  using Event = std::variant<NeedMore, Get, Set, Error>;

  UapiParser();
  ~UapiParser();
  UapiParser(const UapiParser&) = delete;
  UapiParser& operator=(const UapiParser&) = delete;
  UapiParser(UapiParser&&) noexcept;
  UapiParser& operator=(UapiParser&&) noexcept;

  // Buffers the bytes (ignored once fatal). Buffered input is wiped as it is consumed, since
  // it carries key material.
  void feed(std::string_view bytes);
  Event next();
  // The input cannot be resynchronised (a line or request over its size limit): close the
  // connection after answering the Error that reported it.
  bool fatal() const;
  // No partial request is buffered (nothing fed since the last answered request's end).
  bool idle() const;

 private:
  class Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace knit::wg
