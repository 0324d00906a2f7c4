// A tiny metrics registry: counters and gauges, each a family of samples told apart by labels,
// rendered in the Prometheus text exposition format 0.0.4 for a scrape (metrics_server.hpp).
//
//   # HELP knit_coordinator_control_connections Agents connected right now.
//   # TYPE knit_coordinator_control_connections gauge
//   knit_coordinator_control_connections 12
//   # HELP knit_relay_drops_total Packets dropped, by reason.
//   # TYPE knit_relay_drops_total counter
//   knit_relay_drops_total{reason="queue_full"} 3
//   knit_relay_drops_total{reason="unknown_peer"} 0
//
// Format rules kept here (Prometheus "Exposition formats", text format 0.0.4): one family's
// HELP and TYPE lines come once, before its samples, and its samples are contiguous; metric and
// label names match [a-zA-Z_:][a-zA-Z0-9_:]* (label names without ':' and not starting with
// "__"); in label values '\' '"' and newline are written \\ \" \n, in HELP text '\' and newline
// are written \\ \n; values are Go-style floats (NaN, +Inf, -Inf); lines end with '\n'.
//
// Daemons are single-threaded (one Asio loop), so samples are plain integers and doubles, not
// atomics: increment them on the loop, render on the loop. Values that live elsewhere (a
// server's own counters) are copied in by a collect hook that render() runs first.
// Names and labels are chosen by code, not by the network: a bad one is a programming error and
// throws std::invalid_argument when the sample is declared.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace knit::metrics {

using Labels = std::vector<std::pair<std::string, std::string>>;

enum class Kind { counter, gauge };

// A monotonic count. set() is for mirroring a counter kept elsewhere.
class Counter {
 public:
  void inc(std::uint64_t n = 1) { value_ += n; }
  void set(std::uint64_t value) { value_ = value; }
  std::uint64_t value() const { return value_; }

 private:
  std::uint64_t value_ = 0;
};

// A value that goes up and down.
class Gauge {
 public:
  void set(double value) { value_ = value; }
  void add(double delta) { value_ += delta; }
  double value() const { return value_; }

 private:
  double value_ = 0;
};

class Registry {
 public:
  Registry() = default;
  Registry(const Registry&) = delete;
  Registry& operator=(const Registry&) = delete;

  // The sample of family `name` with these labels, created on first use (value 0). The first
  // call for a family fixes its help text and kind; asking for it as the other kind throws.
  // References stay valid for the registry's life.
  Counter& counter(std::string_view name, std::string_view help, const Labels& labels = {});
  Gauge& gauge(std::string_view name, std::string_view help, const Labels& labels = {});

  // Runs before every render, in the order added: copy values kept elsewhere into samples.
  void on_collect(std::function<void()> collect);

  // Every family in the order it was declared, samples in the order they were.
  std::string render();

 private:
  struct Sample {
    std::string labels;  // rendered: `{a="x",b="y"}` or empty
    Counter counter;
    Gauge gauge;
  };
  struct Family {
    std::string name;
    std::string help;
    Kind kind;
    std::vector<std::unique_ptr<Sample>> samples;
  };
  Sample& sample(std::string_view name, std::string_view help, Kind kind, const Labels& labels);

  std::vector<std::unique_ptr<Family>> families_;
  std::vector<std::function<void()>> collectors_;
};

// The pieces of the format, for tests and for callers writing text of their own.
bool is_valid_metric_name(std::string_view name);
bool is_valid_label_name(std::string_view name);
std::string escape_label_value(std::string_view value);
std::string escape_help(std::string_view help);
std::string format_value(double value);
// Content-Type of a scrape's answer.
inline constexpr std::string_view kContentType = "text/plain; version=0.0.4; charset=utf-8";

}  // namespace knit::metrics
