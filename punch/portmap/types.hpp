// The vocabulary shared by the port-mapping codecs, clients and the PortMapper: which protocol,
// what a mapping is, why an attempt failed, and what hostile or stray answers were dropped.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "base/ip.hpp"
#include "base/time.hpp"

namespace knit::punch {

enum class PortMapProtocol : std::uint8_t { pcp, natpmp, upnp };
std::string_view to_string(PortMapProtocol protocol);
std::optional<PortMapProtocol> parse_port_map_protocol(std::string_view text);

// One UDP port mapping on the gateway: datagrams to `external` reach the host's internal_port.
struct PortMapping {
  PortMapProtocol protocol = PortMapProtocol::pcp;
  Endpoint external;
  std::uint16_t internal_port = 0;
  // As granted by the gateway. Zero: a UPnP lease the gateway keeps until deleted ("permanent").
  Duration lifetime{};
  Instant obtained{};
  friend bool operator==(const PortMapping&, const PortMapping&) = default;
};

enum class PortMapErrc {
  no_gateway,       // no IPv4 default route (and none given)
  socket_error,     // the OS refused a socket, connect or send
  timeout,          // no acceptable answer before the deadline
  refused,          // ICMP port unreachable: nothing listens on the gateway's port 5351
  unsupported,      // the gateway answered but does not speak this protocol (version/opcode)
  not_authorized,   // the gateway speaks the protocol but refuses us (switched off, ACL)
  server_error,     // any other error result code (detail names it)
  no_igd,           // UPnP: no Internet Gateway Device answered the discovery
  upnp_error,       // UPnP: a SOAP action failed (detail has the UPnP error code)
  bad_external,     // the answer's external address is unusable (unspecified)
  cancelled,        // stop() came first
};
std::string_view to_string(PortMapErrc error);

struct PortMapFailure {
  PortMapProtocol protocol = PortMapProtocol::pcp;
  PortMapErrc error = PortMapErrc::timeout;
  std::string detail;  // for a person: "result NOT_AUTHORIZED", "UPnP error 718 ..."
  std::string to_string() const;
};

// What one request to one protocol produced: a mapping, or why not.
struct PortMapOutcome {
  std::optional<PortMapping> mapping;
  std::optional<PortMapFailure> failure;
  // The gateway restarted or lost its state since the previous answer (RFC 6887 §8.5).
  bool epoch_reset = false;
};

// Answers dropped before they could count, by cause (hostile, stray or late), and the work done.
struct PortMapCounters {
  std::uint64_t requests_sent = 0;
  std::uint64_t answers_accepted = 0;
  std::uint64_t dropped_size = 0;      // too short, too long, not a multiple of 4
  std::uint64_t dropped_version = 0;   // unknown version byte
  std::uint64_t dropped_opcode = 0;    // not a response, or for another opcode
  std::uint64_t dropped_nonce = 0;     // PCP mapping nonce not ours
  std::uint64_t dropped_mismatch = 0;  // another protocol / internal port than asked
  std::uint64_t dropped_source = 0;    // not from the gateway's address and port 5351
  std::uint64_t renewals = 0;
  std::uint64_t renewal_failures = 0;
  std::uint64_t epoch_resets = 0;
  std::uint64_t mappings_lost = 0;
  std::uint64_t dropped_total() const {
    return dropped_size + dropped_version + dropped_opcode + dropped_nonce + dropped_mismatch +
           dropped_source;
  }
};

}  // namespace knit::punch
