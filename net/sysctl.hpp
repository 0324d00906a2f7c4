// Reading and writing /proc/sys, for the handful of per-interface knobs knit-natbox needs.
// Keys use slashes, relative to /proc/sys: "net/ipv4/conf/eth0/rp_filter" (so an interface
// name with dots needs no escaping).
#pragma once

#include <optional>
#include <string>
#include <system_error>

namespace knit::net {

// The value without its trailing newline; nullopt when the key does not exist or is unreadable.
std::optional<std::string> read_sysctl(const std::string& key);
// ENOENT when the key does not exist (e.g. IPv6 disabled in the kernel).
std::error_code write_sysctl(const std::string& key, const std::string& value);

}  // namespace knit::net
