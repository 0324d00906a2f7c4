// Every timing and bound of path discovery, in one place, each with the reason for its value.
//
// The numbers that matter most, in a picture (one active peer on a direct path):
//
//   pong      ping   ping   ping  (lost) (lost)   trust ends: relay, full re-probe
//    |---2s----|--2s--|--2s--|--2s--|--2s--|-1s-|
//    ^ last pong                                  ^ last pong + kPathTrust (5 s)
//
// Lab routers drop idle UDP conntrack entries after 30 s; a heartbeat every 2 s keeps a used
// path open with a 15x margin, and a path that stops answering is given up within 5 s.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>

#include "base/time.hpp"

namespace knit::punch {

// --- Keeping a direct path ----------------------------------------------------------------
// Heartbeat ping on the chosen path while the peer is active. Far below the 30 s conntrack
// timeout of the lab routers (and RFC 4787's 2 min minimum); short enough that two missed
// answers fit in kPathTrust.
inline constexpr Duration kHeartbeatInterval = std::chrono::seconds(2);
// A direct path is used for this long after its last pong. Two heartbeats plus 1 s of slack
// for RTT: a dead path moves to the relay within ~5 s, well inside TCP's retransmission
// patience, so connections inside the tunnel survive the switch.
inline constexpr Duration kPathTrust = std::chrono::seconds(5);
// A peer we sent data to within this long is "active": heartbeats, eager re-probing. WireGuard
// sends a keepalive or handshake at least every 25 s on a used tunnel (persistent keepalive),
// so 45 s covers a quiet but open connection.
inline constexpr Duration kActiveTimeout = std::chrono::seconds(45);
// An unanswered ping is forgotten after this long (a pong later than this is unexpected).
inline constexpr Duration kPingTimeout = std::chrono::seconds(5);

// --- Probing ------------------------------------------------------------------------------
// Full probe (call-me-maybe through the relay + ping every candidate) of an active peer with no
// direct path: first retry after 5 s, doubling to 60 s so a pair that can only use the relay
// (hard <-> hard) costs a few packets a minute. Reset by anything that may change the answer:
// new candidates on either side, a network change.
inline constexpr Duration kReprobeMin = std::chrono::seconds(5);
inline constexpr Duration kReprobeMax = std::chrono::seconds(60);
// Full probe of an active peer that already has a direct path, to find a better one (a LAN
// path appearing, a route change).
inline constexpr Duration kUpgradeInterval = std::chrono::seconds(60);
// Two full probes of one peer are never closer than this, whatever triggers them (data bursts,
// repeated call-me-maybes, endpoint updates).
inline constexpr Duration kMinFullProbeSpacing = std::chrono::seconds(1);
// We answer a ping from a path we have not proven ourselves with our own ping, at most this
// often per candidate (simultaneous open: both sides need a pong).
inline constexpr Duration kPingBackSpacing = std::chrono::milliseconds(500);

// Openers (manager.hpp, "who sends first"): TTL 2 leaves our host and our router (one hop) and
// expires at the next router, long before the peer's. A carrier NAT behind ours is not opened
// by it (two NATs are three hops); carrier NATs firewall their own address in practice.
inline constexpr std::uint8_t kOpenerTtl = 2;
// ...unless an ICMP "time exceeded" about an opener comes from a private or shared (100.64/10)
// address: that hop is inside our own NATs (a carrier NAT's inside interface), so the opener
// died before it opened them all. The TTL then grows by one, up to this (three NATs of ours),
// and the openers go again (PathManager::on_time_exceeded). A hop with a public address answering
// means the opener left our NATs: the TTL is right. An ISP's own routers on private addresses can
// push it up too; at most two hops more, and still short of a peer's router in all but
// neighbouring networks.
inline constexpr std::uint8_t kOpenerTtlMax = 4;
// One raise per this long: the answers about one round of openers (one per public candidate of
// every peer) come back together, and those still arriving after the next round left cannot be
// told from answers about it (ICMP does not carry our TTL).
inline constexpr Duration kOpenerTtlHoldoff = std::chrono::milliseconds(500);
// Full pings follow the openers when the peer's call-me-maybe arrives, else after this long: a
// safety net only. A peer that does not know us yet drops our call-me-maybe and sends its own
// when the coordinator's delta reaches it; full pings sent before that would reach its router
// before its flow to us exists and take the port there (the NAT grid saw 2 s fire too early on
// a loaded host, and such a pair stayed on the relay ~40 s until the stolen entry expired). A
// peer without a relay sends plain pings at once, which our openers let in.
inline constexpr Duration kOpenerFallback = std::chrono::seconds(15);

// --- Rate bounds (token buckets) ------------------------------------------------------------
// Per peer: ordinary pings (full probes, heartbeats, ping-backs). A full probe of every
// candidate must fit in one burst.
inline constexpr std::uint32_t kPeerPingBurst = 40;
inline constexpr std::uint32_t kPeerPingRate = 20;  // per second
// Global: every disco datagram over UDP (pings, pongs, prediction probes). Prediction alone
// uses at most kSprayRate + kProbeSocketPingRate; the rest is room for ordinary probing.
inline constexpr std::uint32_t kGlobalDiscoBurst = 400;
inline constexpr std::uint32_t kGlobalDiscoRate = 400;  // per second
// Call-me-maybes through the relay, per peer (a relay must never see a flood from us).
inline constexpr std::uint32_t kCallMeMaybeBurst = 4;
inline constexpr std::uint32_t kCallMeMaybeRate = 1;  // per second

// --- Bounds on memory -----------------------------------------------------------------------
inline constexpr std::size_t kMaxCandidates = 32;         // per peer (coordinator + cmm + observed)
inline constexpr std::size_t kMaxOutstandingPings = 64;   // per peer
inline constexpr std::size_t kMaxLocalCandidates = 16;    // what fits in one call-me-maybe

// --- Path choice ----------------------------------------------------------------------------
// Switch to another proven path only when it is better by both this much and this fraction:
// RTT samples jitter by a few ms, and flapping between two similar paths reorders packets.
inline constexpr Duration kSwitchMinGain = std::chrono::milliseconds(5);
inline constexpr std::uint32_t kSwitchMinPercent = 20;
// A private (LAN) endpoint counts as this much faster than it measures: it stays up when the
// internet link goes down, costs no NAT state, and is usually faster anyway. Larger than
// kSwitchMinGain so a close LAN path replaces a public one.
inline constexpr Duration kLanPreference = std::chrono::milliseconds(10);

// --- Port prediction (../shared/NAT.md, the birthday paradox) -------------------------------
// The hard side opens this many probe sockets; each sends one ping to the easy side's
// reflexive endpoint, opening one mapping whose filter admits the easy endpoint.
inline constexpr std::size_t kProbeSockets = 256;
// Pace of those pings: 256 in 1.28 s, never a burst of hundreds of packets.
inline constexpr std::uint32_t kProbeSocketPingRate = 200;  // per second
// The easy side probes random ports of the hard side's public address: P(hit) after k probes
// = 1 - (1 - 256/65536)^k: 1024 -> 98 %, 2048 -> 99.97 %. 100/s -> at most 20.5 s.
inline constexpr std::uint32_t kSprayRate = 100;  // per second
inline constexpr std::size_t kSprayMaxProbes = 2048;
inline constexpr std::uint16_t kSprayPortMin = 1024;  // RFC 4787 REQ-3a: dynamic ports >= 1024
inline constexpr std::uint16_t kSprayPortMax = 65535;
// The easy side starts after the hard side had time to open most of its mappings.
inline constexpr Duration kSprayStartDelay = std::chrono::milliseconds(500);
// Prediction starts only if plain probing has not found a path this long after both sides'
// facts are known: cheaper pairs (e.g. a hard side behind a full cone) need no sockets.
inline constexpr Duration kPredictStartDelay = std::chrono::seconds(1);
// Probe sockets live this long without a hit: the spray needs at most 20.5 s + start delay.
inline constexpr Duration kProbeSocketLifetime = std::chrono::seconds(30);
// A failed prediction for one peer is retried after 10 s, then 20, 40 ... up to 5 min: soon
// enough to recover from an outage that outlived the NAT mappings, rarely enough that a pair
// that keeps failing (a NAT we misjudged) never looks like a port scan.
inline constexpr Duration kPredictRetryMin = std::chrono::seconds(10);
inline constexpr Duration kPredictRetryMax = std::chrono::minutes(5);
// Predictions for several peers run at once (a hard node with several easy peers used to wait
// ~20 s per peer in line). The hard side holds kProbeSockets sockets per prediction, so two at
// once (512 descriptors, well inside the usual 1024 soft limit with the rest of knitd); the easy
// side only sprays from its main socket, three at once (3 x kSprayRate leaves a quarter of the global bucket for ordinary probes). Whatever runs, every probe still passes
// the global bucket (kGlobalDiscoRate): concurrency shares the rate, never raises it.
inline constexpr std::size_t kMaxPredictionsHard = 2;
inline constexpr std::size_t kMaxPredictionsEasy = 3;
// A winning probe socket whose path has been out of use this long is closed.
inline constexpr Duration kProbeSocketLinger = std::chrono::seconds(60);

}  // namespace knit::punch
