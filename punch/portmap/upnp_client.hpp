// UPnP IGD (WANIPConnection) through libminiupnpc. Its calls block (SSDP discovery waits its
// full delay, three searches of 2 s; SOAP actions are HTTP round trips with miniupnpc's own
// socket timeouts), so they run on one worker thread, one job at a time, and each result is
// posted back to the Asio loop. Only the worker touches miniupnpc state; only the loop touches
// the rest of the client.
//
// Destroying the client never waits for the worker: the loop must stay responsive (`knit down`
// during a discovery once held it for 7 s). The worker and its queue live in a shared state the
// thread keeps alive; the client detaches the thread, drops the queued jobs except a pending
// DeletePortMapping (so the router still learns the mapping is gone), and tells the worker to
// post nothing more. The worker finishes its job in flight and that deletion, then exits. Its
// io_context is touched only under the shared mutex while the client exists, and the client
// (not the job) holds the work guard, so nothing refers to the loop once the client is gone.
//
//   discover (SSDP M-SEARCH, upnp_discover_timeout) -> the IGD whose description URL is on the
//   gateway's address (else miniupnpc's choice of a connected IGD) -> GetExternalIPAddress ->
//   AddPortMapping(UDP, external = our port, lease) -> ... -> DeletePortMapping
#pragma once

#include <asio.hpp>
#include <condition_variable>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>

#include "punch/portmap/client.hpp"

namespace knit::punch {

class UpnpClient final : public PortMapClient {
 public:
  UpnpClient(asio::io_context& io, PortMapClientOptions options, PortMapCounters& counters);
  ~UpnpClient() override;
  UpnpClient(const UpnpClient&) = delete;
  UpnpClient& operator=(const UpnpClient&) = delete;

  PortMapProtocol protocol() const override { return PortMapProtocol::upnp; }
  void map(std::uint16_t internal_port, Duration lifetime, Done done) override;
  void probe(Done done) override;
  void unmap(std::function<void()> done) override;
  void cancel() override;

 private:
  struct Igd;     // miniupnpc's URLs and device data; worker thread only
  struct Worker;  // the queue, the thread's state and the loop it posts to, shared
  using Job = std::function<PortMapOutcome(Igd&)>;
  void run(Job job, Done done, bool cleanup = false);
  void finish(std::uint64_t id, PortMapOutcome outcome);

  asio::io_context& io_;
  PortMapClientOptions options_;
  PortMapCounters& counters_;
  std::shared_ptr<int> alive_ = std::make_shared<int>(0);
  std::optional<PortMapping> mapping_;  // loop thread

  std::shared_ptr<Worker> worker_;
  bool thread_started_ = false;  // loop thread
  // Loop thread: the callers waiting for jobs queued or running, by job number (the worker
  // carries only the number, so every callback lives and dies on the loop), and the work guard
  // that keeps io_context::run() from returning while the loop waits only for them.
  std::map<std::uint64_t, Done> waiting_;
  std::uint64_t next_job_ = 0;
  std::optional<asio::executor_work_guard<asio::io_context::executor_type>> busy_;
};

}  // namespace knit::punch
