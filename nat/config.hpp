// How a NatEngine behaves: the RFC 4787 behaviours (mapping, filtering, pooling, ports), the
// timers of RFC 4787/5382/5508/7857, table bounds, and static port forwards. Plain data,
// validated once by validate() when the engine is built.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "base/ip.hpp"
#include "base/time.hpp"
#include "nat/packet_view.hpp"

namespace knit::nat {

// RFC 4787 §4.1: what a mapping's key includes besides the internal endpoint.
enum class Mapping : std::uint8_t {
  endpoint_independent,        // (X:x)          one external endpoint for every remote (REQ-1)
  address_dependent,           // (X:x, Y)       a new one per remote address
  address_and_port_dependent,  // (X:x, Y:y)     a new one per remote endpoint ("symmetric")
};

// RFC 4787 §5: which inbound packets a mapping admits.
enum class Filtering : std::uint8_t {
  endpoint_independent,        // anyone who sends to the external endpoint ("full cone")
  address_dependent,           // only addresses X:x has sent to ("restricted cone")
  address_and_port_dependent,  // only endpoints X:x has sent to ("port-restricted cone")
};

const char* to_string(Mapping mapping);
const char* to_string(Filtering filtering);

// A static DNAT rule: packets to external_address:external_port go to internal:internal_port,
// from anyone (endpoint-independent filtering), and that internal endpoint's outbound flows
// leave from the same external port.
struct PortForward {
  Protocol protocol = Protocol::udp;  // udp or tcp
  std::uint16_t external_port = 0;
  IpAddress internal_address;
  std::uint16_t internal_port = 0;
  std::optional<IpAddress> external_address;  // default: the first of the pool
};

struct Config {
  // The pool of public addresses. RFC 4787 REQ-2: "paired" pooling, one internal host always
  // gets the same one (chosen by a keyed hash of its address).
  std::vector<IpAddress> external_addresses;
  Mapping mapping = Mapping::endpoint_independent;
  Filtering filtering = Filtering::endpoint_independent;

  // Dynamic ports for internal ports >= 1024. RFC 4787 REQ-3a: internal ports below 1024 map
  // into 1..1023 regardless. ICMP query identifiers may use the whole 16-bit space.
  std::uint16_t port_min = 1024;
  std::uint16_t port_max = 65535;
  bool port_preservation = true;  // RFC 4787 §4.2.1: keep the internal port when it is free
  bool port_parity = true;        // RFC 4787 REQ-4: keep the port's parity
  // RFC 4787 REQ-3a: internal ports below 1024 map into 1..1023. Off: every TCP/UDP mapping
  // takes a port of [port_min, port_max] (knitd's subnet-router SNAT, whose replies are steered
  // by that range alone: agent/router_nat.hpp).
  bool low_ports_stay_low = true;
  bool hairpinning = true;        // RFC 4787 REQ-9, RFC 5382 REQ-8, RFC 5508 REQ-7

  // Timers: each packet moves a session's expiry to now + the timeout of its state. The
  // defaults meet the RFC minimums; shorter ones are accepted, to emulate NATs that do not.
  Duration udp_timeout = std::chrono::minutes(5);  // RFC 4787 REQ-5: >= 2 min, default >= 5
  Duration tcp_established_timeout = std::chrono::minutes(124);  // RFC 5382 REQ-5: >= 2 h 4 min
  Duration tcp_transitory_timeout = std::chrono::minutes(4);     // RFC 5382 REQ-5, RFC 7857 §2.1
  Duration icmp_timeout = std::chrono::seconds(60);              // RFC 5508 REQ-2: >= 60 s
  Duration unsolicited_syn_hold = std::chrono::seconds(6);       // RFC 5382 REQ-4
  // RFC 4787 REQ-6: outbound packets always refresh; inbound ones do when this is set (MAY).
  bool inbound_refresh = true;
  // An outbound TCP segment without SYN for an unknown connection (the engine restarted under
  // it) opens a session, transitory until the remote answers. Off: dropped as no_mapping.
  bool tcp_midstream_pickup = true;
  // RFC 5382 REQ-4: after the hold, an unsolicited SYN earns an ICMP port unreachable
  // (fetched with NatEngine::take_timer_icmp); off: it is dropped silently.
  bool unsolicited_syn_icmp = true;

  // Bounds. A mapping is an (internal endpoint -> external endpoint) binding; a session is one
  // (mapping, remote endpoint) pair with its own state and timer.
  std::size_t max_mappings = 65536;
  std::size_t max_sessions = 262144;
  std::size_t max_held_syns = 256;
  std::size_t max_fragment_flows = 1024;
  // RFC 5508 REQ-8: no room for a new session -> ICMP 3/13 to the sender; off: silent drop.
  bool icmp_error_on_exhaustion = true;

  // Acts as a router: decrements TTL and answers TTL expiry with ICMP time exceeded.
  bool decrement_ttl = true;
  // Outbound sources must fall inside one of these (empty: any unicast source).
  std::vector<IpPrefix> inside_prefixes;
  // The engine runs on the host that owns the external addresses (knitd's stateful filter):
  // outbound packets *from* an external address are the host's own flows and are tracked
  // like an inside host's, keeping their address and (port preservation, when free) their
  // port, so they pass untranslated and open the filter for their replies. Off (a router):
  // such packets are dropped as not_inside.
  bool own_address_flows = false;
  // Source of the ICMP errors the engine sends inside; unset: the host's external address.
  std::optional<IpAddress> inside_address;

  std::vector<PortForward> port_forwards;
};

enum class ConfigError : std::uint8_t {
  none,
  no_external_address,
  not_ipv4,            // an external, inside or forward address is not IPv4
  bad_port_range,      // port_min < 1024 or port_min > port_max
  bad_timeout,         // zero or negative
  zero_bound,          // a table bound is 0, or more than the 32-bit indexes can address
  too_many_addresses,  // more than 65535 external addresses
};
const char* to_string(ConfigError error);

ConfigError validate(const Config& config);

}  // namespace knit::nat
