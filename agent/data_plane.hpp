// knitd's packet path: the TUN, the packet filter (the agent's NAT engine) and the WireGuard
// device core, on one Asio loop. The core decides; this class moves bytes and time. Paths
// beneath the device are the transport's business (wg/transport.hpp): this class never sees a
// socket.
//
// Outbound, TUN -> network (on_tun_readable, up to kTunPacketsPerWake reads a wake):
//   1. read one packet from the TUN into frame_, kFrameHeadroom bytes in (room for the header);
//      with offloads (tun_device.hpp) one read is a virtio-net header and up to 64 KiB: a
//      packet's unfinished checksum is completed in place, a super-packet is split into
//      segments (tun/offload.hpp), each into segment_ and through steps 2-4 in turn;
//      a packet (or segment) the local hook takes (the mesh resolver's address,
//      dns_service.hpp) stops here
//   2. PacketFilter::outbound       conntrack and port-forward rewrites (packet_filter.hpp);
//                                   then the MSS clamp (nat/mss_clamp.hpp): a SYN's MSS fits
//                                   the tunnel MTU towards its peer (peer_mtu)
//   3. wg::Device::prepare_seal     allowed IPs pick the peer; the next counter, header and
//                                   padding, in place in one of kBatch preallocated frames
//                                   (slots_), a job (wg/crypto_job.hpp); or staged while a
//                                   handshake runs
//   4. the batch's AEAD             when kBatch jobs wait, or at the end of the burst:
//                                   CryptoWorkers::run seals them on the loop's thread and
//                                   --crypto-threads - 1 workers (crypto_workers.hpp)
//   5. wg::Device::finish_seal      in the order prepared: wg::Transport::send, the path beneath
//                                   the seam (udp_transport / mesh_transport), peer timers
//   6. after the burst              Transport::flush (sendmmsg), re-arm the device's timer
// Inbound, network -> TUN (on_wireguard, a batch a transport classified as WireGuard):
//   1. wg::Device::prepare_open     the index picks peer and keypair; the packet becomes a job;
//                                   a handshake message finishes the jobs held, then runs at once
//   2. the batch's AEAD             as outbound (CryptoWorkers)
//   3. wg::Device::finish_open      in arrival order: replay window (after authentication), key
//                                   confirmation, cryptokey routing (the inner source must be
//                                   the peer's)
//   4. write_tun                    PacketFilter::inbound (shields, forwards), the MSS clamp
//                                   (a peer's SYN and SYN-ACK fit our path to it), then the TUN;
//                                   with offloads a TCP flow's segments are coalesced into
//                                   super-packets (tun/offload.hpp) and written after the batch
//   3. after the batch              Transport::flush (handshake answers), re-arm the timer
// Threads: everything here runs on the loop, which alone owns the device's state (peers,
// handshakes, keys, counters, replay windows, timers); workers only run the AEAD of jobs the
// loop handed them, and every batch is finished before the handler that prepared it returns,
// so configuration, timers and other datagrams never meet a half-done batch.
// Time: the device's next deadline arms one timer (net/deadline_timer.hpp); on_timers runs
// retransmissions, keepalives, rekeys and key zeroing.
#pragma once

#include <asio.hpp>

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "agent/crypto_workers.hpp"
#include "agent/datagram.hpp"
#include "agent/packet_filter.hpp"
#include "agent/path_mtu_hints.hpp"
#include "base/random.hpp"
#include "nat/mss_clamp.hpp"
#include "nat/too_big.hpp"
#include "net/deadline_timer.hpp"
#include "tun/offload.hpp"
#include "tun/tun_device.hpp"
#include "wg/device.hpp"

namespace knit::agent {

class DataPlane final : public wg::TunSink, public WireGuardReceiver, private tun::CoalescedSink {
 public:
  static constexpr int kTunPacketsPerWake = 64;
  // Packets sealed or opened together (the most jobs waiting for the AEAD at once).
  static constexpr std::size_t kBatch = 128;

  // transport: where the device sends until told otherwise (Device::set_transport).
  // crypto: the threads that seal and open (knitd's --crypto-threads; 1: the loop alone).
  DataPlane(asio::io_context& io, tun::TunDevice& tun, wg::Transport& transport, int mtu,
            CryptoWorkers::Options crypto = {});
  ~DataPlane() override;
  DataPlane(const DataPlane&) = delete;
  DataPlane& operator=(const DataPlane&) = delete;

  void start();
  // Stops reading and drops every session (configuration stays).
  void stop();

  wg::Device& device() { return device_; }
  const wg::Device& device() const { return device_; }
  // A change from outside the packet path (the UAPI, the mesh): runs it on the device with the
  // current time, then sends what it queued and re-arms the timer.
  void configure(const std::function<void(wg::Device&, wg::Now)>& change);
  // The shields and port forwards between the TUN and the device (packet_filter.hpp).
  PacketFilter& filter() { return filter_; }
  const PacketFilter& filter() const { return filter_; }
  std::uint64_t tun_write_errors() const { return tun_write_errors_; }
  // Super-packets read from the TUN and split; packets the offload code refused (malformed).
  std::uint64_t tun_super_packets() const { return tun_super_packets_; }
  std::uint64_t tun_offload_errors() const { return tun_offload_errors_; }
  const tun::TcpCoalescer::Stats& coalescer_stats() const { return coalescer_.stats(); }
  const CryptoWorkers& crypto() const { return crypto_; }
  // Packets knitd answers itself: the hook sees every packet read from the TUN first and
  // returns true for those it takes (they go no further). Its answers go to the TUN through
  // write_local, past the filter and the device (they come from knitd, not from a peer).
  using LocalHook = std::function<bool(ByteSpan packet)>;
  void set_local_hook(LocalHook hook) { local_hook_ = std::move(hook); }
  void write_local(ByteSpan packet);
  // A packet the host delivered to knitd some other way than the TUN (the subnet router's raw
  // ICMP socket, snat_host.hpp): through the outbound path as if read from the TUN.
  void inject_outbound(ByteSpan packet);
  // The tunnel MTU towards a peer (its path MTU, punch/path/pmtu.hpp); 0: the device's MTU.
  // Asked only for SYNs that carry an MSS option, in both directions. Without a hook every
  // SYN is clamped to the device's MTU. set_mss_clamp(false) turns clamping off (KNIT_PMTU=off).
  using PeerMtu = std::function<std::size_t(const wg::PublicKey& peer)>;
  void set_peer_mtu(PeerMtu hook) { peer_mtu_ = std::move(hook); }
  void set_mss_clamp(bool on) { mss_clamp_on_ = on; }
  const nat::MssClampStats& mss_clamp_stats() const { return mss_clamp_.stats(); }
  // Peers whose path is proven to carry less than the tunnel MTU, and what it carries
  // (MeshTransport::MtuLimits). A packet from the TUN larger than its peer's limit is not sealed
  // (the path would drop it): the host gets the "too big" answer a router gives
  // (nat/too_big.hpp), rate-limited. Checked only for packets above the smallest limit.
  void set_mtu_limits(std::vector<std::pair<wg::PublicKey, std::size_t>> limits);
  // Plain `wg` mode (no peer_mtu hook): an ICMP "fragmentation needed" / "packet too big" about
  // a datagram to `to` (UdpTransport's too-big handler). Kept (path_mtu_hints.hpp), with what the
  // kernel's route cache says (net/route_mtu.hpp, asked on a SYN at most every 10 s per
  // address), and used by the MSS clamp for peers whose endpoint is that address, so new TCP
  // connections fit the path rather than leave every full-size segment to the kernel's
  // fragmentation. set_path_hints(false) (KNIT_PMTU=off, and in tests) asks nothing.
  void on_path_too_big(const Endpoint& to, std::size_t mtu);
  void set_path_hints(bool on) { path_hints_on_ = on; }
  const PathMtuHints& path_mtu_hints() const { return path_hints_; }
  struct TooBigStats {
    std::uint64_t answered = 0;      // ICMP 3/4 or ICMPv6 2 written to the TUN
    std::uint64_t rate_limited = 0;  // dropped without an answer: over the rate
    std::uint64_t not_allowed = 0;   // dropped without an answer: an error, a fragment, ...
    std::uint64_t fragmentable = 0;  // IPv4 without DF or IPv6 up to 1280 bytes, sealed as it is
  };
  const TooBigStats& too_big_stats() const { return too_big_stats_; }
  // One line of the device and filter counters, for the shutdown log.
  std::string summary() const;
  static wg::Now now();

  // WireGuardReceiver: datagrams from any transport.
  void on_wireguard(wg::Now now, std::span<const ReceivedDatagram> batch) override;
  // wg::TunSink
  void write_tun(MutableByteSpan packet) override;

 private:
  void arm_tun();
  void on_tun_readable();
  void after_work();
  void outbound(const wg::Now& t, MutableByteSpan frame, std::size_t size);
  // The next free frame of the batch (kFrameHeadroom, slot_plain_ bytes, kFrameTailroom).
  MutableByteSpan slot() { return {slots_.data() + pending_ * slot_size_, slot_size_}; }
  // Makes a packet the filter passed a job (copied into the batch's next frame unless it is
  // there already); runs the batch when it is full.
  void seal(const wg::Now& t, MutableByteSpan frame, std::size_t size);
  // Runs the AEAD of every job waiting and finishes them in order.
  void finish_batch(const wg::Now& t);
  void write_coalesced(const tun::VirtioNetHeader& header, ByteSpan packet) override;
  // outbound: the packet goes to the peer that holds its destination; else it came from the
  // peer that holds its source.
  void clamp_mss(MutableByteSpan packet, bool outbound);
  // true: the packet exceeds its peer's proven limit and was answered or dropped.
  bool too_big(const wg::Now& t, ByteSpan packet);

  tun::TunDevice& tun_;
  asio::posix::stream_descriptor tun_stream_;
  SystemRandom rng_;
  PacketFilter filter_;
  wg::Device device_;
  net::DeadlineTimer timer_;
  std::vector<std::uint8_t> frame_;    // a read: headroom, [virtio header,] packet, tailroom
  std::vector<std::uint8_t> segment_;  // one segment of a super-packet, headroom and tailroom
  CryptoWorkers crypto_;
  std::size_t slot_plain_;             // the largest packet a batch frame holds (MTU + slack)
  std::size_t slot_size_;
  std::vector<std::uint8_t> slots_;    // kBatch frames, job i seals in frame i
  std::vector<wg::CryptoJob> jobs_;    // kBatch
  std::size_t pending_ = 0;            // jobs prepared, not yet finished
  tun::Segmenter segmenter_;
  tun::TcpCoalescer coalescer_;
  LocalHook local_hook_;
  PeerMtu peer_mtu_;
  PathMtuHints path_hints_;
  bool path_hints_on_ = false;
  nat::MssClamp mss_clamp_;
  bool mss_clamp_on_ = true;
  std::vector<std::pair<wg::PublicKey, std::size_t>> mtu_limits_;
  std::size_t mtu_floor_ = SIZE_MAX;  // the smallest limit; SIZE_MAX: none
  nat::TooBigLimiter too_big_limiter_;
  TooBigStats too_big_stats_;
  std::uint64_t tun_write_errors_ = 0;
  std::uint64_t tun_super_packets_ = 0;
  std::uint64_t tun_offload_errors_ = 0;
  bool running_ = false;
};

}  // namespace knit::agent
