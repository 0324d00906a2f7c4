// The knit CLI's human output: `knit status` in the style of `tailscale status` (one line per
// node, columns aligned), and the small formatters it is made of.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "localapi/protocol.hpp"
#include "base/time.hpp"

namespace knit::cli {

// "0 B", "512 B", "1.5 KiB", "20.0 MiB", ...
std::string format_bytes(std::uint64_t bytes);
// "never", "just now", "12s ago", "5m ago", "3h ago", "2d ago" for a unix time seen from now.
std::string format_age(std::optional<std::int64_t> unix_seconds, WallTime now);
// "0.42 ms", "12.3 ms", "120 ms"; "-" for none.
std::string format_rtt(std::optional<double> rtt_ms);

// The whole `knit status` text, ending in a newline:
//
//   100.64.0.1  host-a  self    192.0.2.10:41641, [2001:db8::10]:41641
//   100.64.0.2  host-b  direct  192.0.2.11:41641  rtt -  handshake 12s ago  rx 1.2 KiB  tx 3.4 KiB
//   100.64.0.3  host-c  none    -                 rtt -  handshake never    rx 0 B      tx 0 B     offline
//   # coordinator: waiting: cannot reach the coordinator at ...
std::string format_status(const localapi::StatusReply& reply, WallTime now);

// `knit forward list`: one row per forward with a header row, or "no port forwards".
std::string format_forwards(const std::vector<localapi::ForwardStatus>& forwards);
// `knit nat`: the subnet router's SNAT, its counters and one line per translation.
std::string format_snat(const localapi::SnatStatus& snat);

}  // namespace knit::cli
