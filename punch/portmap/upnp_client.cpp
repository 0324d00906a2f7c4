#include "punch/portmap/upnp_client.hpp"

#include <miniupnpc/miniupnpc.h>
#include <miniupnpc/upnpcommands.h>
#include <miniupnpc/upnperrors.h>

#include <algorithm>
#include <cstring>
#include <string>
#include <vector>

namespace knit::punch {

// miniupnpc's view of the chosen gateway device, kept between jobs (worker thread only).
struct UpnpClient::Igd {
  bool valid = false;
  UPNPUrls urls{};
  IGDdatas data{};
  char lan_address[64] = {};

  ~Igd() { reset(); }
  void reset() {
    if (valid) FreeUPNPUrls(&urls);
    valid = false;
    urls = UPNPUrls{};
    data = IGDdatas{};
    lan_address[0] = '\0';
  }
  const char* control() const { return urls.controlURL; }
  const char* service() const { return data.first.servicetype; }
};

namespace {

PortMapFailure fail(PortMapErrc error, std::string detail) {
  return PortMapFailure{PortMapProtocol::upnp, error, std::move(detail)};
}

// "UPnP error 718 (ConflictInMappingEntry)", or miniupnpc's own negative codes.
std::string describe(const char* action, int code) {
  std::string s = std::string(action) + ": ";
  if (code > 0) s += "UPnP error " + std::to_string(code);
  else s += "miniupnpc error " + std::to_string(code);
  if (const char* text = strupnperror(code)) {
    s += " (";
    s += text;
    s += ')';
  }
  return s;
}

// The host part of "http://10.0.0.1:5000/rootDesc.xml".
std::string url_host(const char* url) {
  if (!url) return {};
  std::string_view u(url);
  const auto scheme = u.find("://");
  if (scheme == std::string_view::npos) return {};
  u.remove_prefix(scheme + 3);
  const auto end = u.find_first_of(":/");
  return std::string(u.substr(0, end));
}

bool is_wan_connection(const IGDdatas& data) {
  return std::strstr(data.first.servicetype, "WANIPConnection") ||
         std::strstr(data.first.servicetype, "WANPPPConnection");
}

// Finds the IGD once; later jobs reuse it until an action fails at the HTTP level.
std::optional<PortMapFailure> discover(auto& igd, const IpAddress& gateway, Duration timeout) {
  if (igd.valid) return std::nullopt;
  const int delay_ms =
      static_cast<int>(std::chrono::duration_cast<std::chrono::milliseconds>(timeout).count());
  int error = 0;
  UPNPDev* devices =
      upnpDiscover(std::max(delay_ms, 100), nullptr, nullptr, UPNP_LOCAL_PORT_ANY, 0, 2, &error);
  if (!devices) {
    return fail(PortMapErrc::no_igd, "no SSDP answer within " + std::to_string(delay_ms) +
                                         " ms (miniupnpc code " + std::to_string(error) + ")");
  }
  // The device served from the gateway's own address is the gateway we mean.
  const std::string host = gateway.to_string();
  for (UPNPDev* d = devices; d && !igd.valid; d = d->pNext) {
    if (url_host(d->descURL) != host) continue;
    if (UPNP_GetIGDFromUrl(d->descURL, &igd.urls, &igd.data, igd.lan_address,
                           sizeof igd.lan_address) != 1)
      continue;
    igd.valid = true;
    if (!is_wan_connection(igd.data) || !igd.control()) igd.reset();
  }
  if (!igd.valid) {
    const int r = UPNP_GetValidIGD(devices, &igd.urls, &igd.data, igd.lan_address,
                                   sizeof igd.lan_address);
    if (r > 0) igd.valid = true;
    if (r != 1) {
      igd.reset();
      freeUPNPDevlist(devices);
      return fail(PortMapErrc::no_igd, r == 0   ? "devices answered but none is an IGD"
                                       : r == 2 ? "the IGD reports it is not connected"
                                                : "a UPnP device answered but is not an IGD");
    }
  }
  freeUPNPDevlist(devices);
  return std::nullopt;
}

std::optional<IpAddress> external_address(auto& igd, std::optional<PortMapFailure>& failure) {
  char text[64] = {};
  const int r = UPNP_GetExternalIPAddress(igd.control(), igd.service(), text);
  if (r != UPNPCOMMAND_SUCCESS) {
    if (r < 0) igd.reset();
    failure = fail(PortMapErrc::upnp_error, describe("GetExternalIPAddress", r));
    return std::nullopt;
  }
  const auto address = IpAddress::parse(text);
  if (!address || address->is_unspecified()) {
    failure = fail(PortMapErrc::bad_external, std::string("external address '") + text + "'");
    return std::nullopt;
  }
  return address;
}

}  // namespace

struct UpnpClient::Worker {
  struct Entry {
    std::function<void(Igd&)> run;
    std::uint64_t id = 0;
    bool cleanup = false;  // still run after the client is gone (DeletePortMapping)
  };
  std::mutex mutex;
  std::condition_variable wake;
  std::deque<Entry> jobs;
  bool stopping = false;
  asio::io_context* io = nullptr;  // under mutex; null once the client is gone
  Igd igd;                          // the worker thread only

  void loop() {
    for (;;) {
      Entry job;
      {
        std::unique_lock lock(mutex);
        wake.wait(lock, [this] { return stopping || !jobs.empty(); });
        if (jobs.empty()) return;  // stopping, and nothing left to finish
        job = std::move(jobs.front());
        jobs.pop_front();
      }
      job.run(igd);
    }
  }
};

UpnpClient::UpnpClient(asio::io_context& io, PortMapClientOptions options,
                       PortMapCounters& counters)
    : io_(io), options_(options), counters_(counters), worker_(std::make_shared<Worker>()) {
  worker_->io = &io_;
}

UpnpClient::~UpnpClient() {
  alive_.reset();
  {
    std::lock_guard lock(worker_->mutex);
    worker_->io = nullptr;
    worker_->stopping = true;
    std::erase_if(worker_->jobs, [](const Worker::Entry& job) { return !job.cleanup; });
  }
  worker_->wake.notify_all();
}

void UpnpClient::run(Job job, Done done, bool cleanup) {
  const std::uint64_t id = next_job_++;
  waiting_.emplace(id, std::move(done));
  if (!busy_) busy_.emplace(asio::make_work_guard(io_));
  Worker* worker = worker_.get();
  {
    std::lock_guard lock(worker->mutex);
    worker->jobs.push_back(
        {[worker, job = std::move(job), id, client = this, alive = std::weak_ptr<int>(alive_)](Igd& igd) {
           PortMapOutcome outcome = job(igd);
           std::lock_guard result_lock(worker->mutex);
           if (worker->io == nullptr) return;  // the client is gone: nobody to tell
           asio::post(*worker->io, [client, alive, id, outcome = std::move(outcome)]() mutable {
             if (alive.lock()) client->finish(id, std::move(outcome));
           });
         },
         id, cleanup});
  }
  if (!thread_started_) {
    thread_started_ = true;
    // Detached: the thread holds the shared state and exits once stopped and drained.
    std::thread([worker = worker_] { worker->loop(); }).detach();
  }
  worker->wake.notify_one();
}

void UpnpClient::finish(std::uint64_t id, PortMapOutcome outcome) {
  auto waiter = waiting_.extract(id);
  if (waiting_.empty()) busy_.reset();
  if (waiter.empty()) return;  // cancelled
  ++counters_.requests_sent;
  if (!outcome.failure) ++counters_.answers_accepted;
  if (outcome.mapping) outcome.mapping->obtained = Clock::now();
  waiter.mapped()(std::move(outcome));
}

void UpnpClient::map(std::uint16_t internal_port, Duration lifetime, Done done) {
  cancel();
  if (!options_.gateway.is_v4() || options_.gateway.is_unspecified())
    return done({{}, fail(PortMapErrc::no_gateway, "no IPv4 gateway address"), false});
  if (mapping_ && mapping_->internal_port != internal_port) mapping_.reset();
  const std::uint16_t external_port = mapping_ ? mapping_->external.port() : internal_port;
  const auto lease_s = std::chrono::duration_cast<std::chrono::seconds>(lifetime).count();
  const IpAddress gateway = options_.gateway;
  const Duration discover_timeout = options_.upnp_discover_timeout;
  Job job = [=](Igd& igd) -> PortMapOutcome {
    if (auto f = discover(igd, gateway, discover_timeout)) return {{}, f, false};
    std::optional<PortMapFailure> failure;
    const auto address = external_address(igd, failure);
    if (!address) return {{}, failure, false};
    const std::string in = std::to_string(internal_port);
    std::string ext = std::to_string(external_port);
    std::string lease = std::to_string(std::max<long long>(lease_s, 1));
    int r = UPNP_AddPortMapping(igd.control(), igd.service(), ext.c_str(), in.c_str(),
                                igd.lan_address, "knit", "UDP", nullptr, lease.c_str());
    if (r == 725) {  // OnlyPermanentLeasesSupported: ask for a permanent one, delete it on stop
      lease = "0";
      r = UPNP_AddPortMapping(igd.control(), igd.service(), ext.c_str(), in.c_str(),
                              igd.lan_address, "knit", "UDP", nullptr, lease.c_str());
    }
    if (r == 718) {  // ConflictInMappingEntry: another host holds the port; any port will do
      char reserved[8] = {};
      r = UPNP_AddAnyPortMapping(igd.control(), igd.service(), ext.c_str(), in.c_str(),
                                 igd.lan_address, "knit", "UDP", nullptr, lease.c_str(),
                                 reserved);
      if (r == UPNPCOMMAND_SUCCESS) ext = reserved;
    }
    if (r != UPNPCOMMAND_SUCCESS) {
      if (r < 0) igd.reset();
      return {{}, fail(PortMapErrc::upnp_error, describe("AddPortMapping", r)), false};
    }
    const int port = std::atoi(ext.c_str());
    if (port <= 0 || port > 65535)
      return {{}, fail(PortMapErrc::bad_external, "reserved port '" + ext + "'"), false};
    return {PortMapping{PortMapProtocol::upnp, Endpoint(*address, static_cast<std::uint16_t>(port)),
                        internal_port, std::chrono::seconds(std::atoll(lease.c_str())), {}},
            {},
            false};
  };
  run(std::move(job), [this, done = std::move(done)](PortMapOutcome outcome) {
    if (outcome.mapping) mapping_ = outcome.mapping;
    done(std::move(outcome));
  });
}

void UpnpClient::probe(Done done) {
  cancel();
  if (!options_.gateway.is_v4() || options_.gateway.is_unspecified())
    return done({{}, fail(PortMapErrc::no_gateway, "no IPv4 gateway address"), false});
  const IpAddress gateway = options_.gateway;
  const Duration discover_timeout = options_.upnp_discover_timeout;
  run(
      [=](Igd& igd) -> PortMapOutcome {
        if (auto f = discover(igd, gateway, discover_timeout)) return {{}, f, false};
        std::optional<PortMapFailure> failure;
        const auto address = external_address(igd, failure);
        if (!address) return {{}, failure, false};
        return {PortMapping{PortMapProtocol::upnp, Endpoint(*address, 0), 0, {}, {}}, {}, false};
      },
      std::move(done));
}

void UpnpClient::unmap(std::function<void()> done) {
  cancel();
  if (!mapping_) return done();
  const std::string ext = std::to_string(mapping_->external.port());
  mapping_.reset();
  run(
      [ext](Igd& igd) -> PortMapOutcome {
        if (!igd.valid) return {{}, fail(PortMapErrc::no_igd, "IGD forgotten"), false};
        const int r = UPNP_DeletePortMapping(igd.control(), igd.service(), ext.c_str(), "UDP",
                                             nullptr);
        if (r != UPNPCOMMAND_SUCCESS)
          return {{}, fail(PortMapErrc::upnp_error, describe("DeletePortMapping", r)), false};
        return {};
      },
      [done = std::move(done)](PortMapOutcome) { done(); }, /*cleanup=*/true);
}

void UpnpClient::cancel() {
  // Queued jobs are dropped (a pending DeletePortMapping stays); the one in flight finishes,
  // but nobody waits for it any more.
  std::vector<std::uint64_t> queued;
  {
    std::lock_guard lock(worker_->mutex);
    std::erase_if(worker_->jobs, [](const Worker::Entry& job) { return !job.cleanup; });
    for (const auto& job : worker_->jobs) queued.push_back(job.id);
  }
  std::erase_if(waiting_, [&](const auto& entry) {
    return std::find(queued.begin(), queued.end(), entry.first) == queued.end();
  });
  if (waiting_.empty()) busy_.reset();
}

}  // namespace knit::punch
