// The metrics registry's text format (Prometheus exposition 0.0.4).
#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <limits>
#include <stdexcept>
#include <string>

#include "base/metrics.hpp"

using namespace knit::metrics;
using namespace std::chrono_literals;

// ---- text format ----

TEST(MetricsFormat, HelpTypeAndSamplesInDeclarationOrder) {
  Registry registry;
  registry.counter("knit_joins_total", "Join requests answered ok.").inc(3);
  registry.gauge("knit_nodes_online", "Nodes connected now.").set(2);
  registry.counter("knit_drops_total", "Drops, by reason.", {{"reason", "malformed"}}).inc();
  registry.counter("knit_drops_total", "Drops, by reason.", {{"reason", "timeout"}}).inc(5);
  EXPECT_EQ(registry.render(),
            "# HELP knit_joins_total Join requests answered ok.\n"
            "# TYPE knit_joins_total counter\n"
            "knit_joins_total 3\n"
            "# HELP knit_nodes_online Nodes connected now.\n"
            "# TYPE knit_nodes_online gauge\n"
            "knit_nodes_online 2\n"
            "# HELP knit_drops_total Drops, by reason.\n"
            "# TYPE knit_drops_total counter\n"
            "knit_drops_total{reason=\"malformed\"} 1\n"
            "knit_drops_total{reason=\"timeout\"} 5\n");
}

TEST(MetricsFormat, SameLabelsGiveTheSameSample) {
  Registry registry;
  Counter& a = registry.counter("x_total", "h", {{"path", "direct"}, {"dir", "rx"}});
  Counter& b = registry.counter("x_total", "h", {{"path", "direct"}, {"dir", "rx"}});
  Counter& c = registry.counter("x_total", "h", {{"path", "relay"}, {"dir", "rx"}});
  EXPECT_EQ(&a, &b);
  EXPECT_NE(&a, &c);
  a.inc(7);
  EXPECT_NE(registry.render().find("x_total{path=\"direct\",dir=\"rx\"} 7\n"), std::string::npos);
}

TEST(MetricsFormat, EscapesLabelValuesAndHelp) {
  EXPECT_EQ(escape_label_value("a\\b\"c\nd"), "a\\\\b\\\"c\\nd");
  EXPECT_EQ(escape_help("line\\one\nline \"two\""), "line\\\\one\\nline \"two\"");  // quotes stay
  Registry registry;
  registry.gauge("g", "help with\nnewline", {{"name", "host \"a\"\\b"}}).set(1);
  EXPECT_EQ(registry.render(),
            "# HELP g help with\\nnewline\n"
            "# TYPE g gauge\n"
            "g{name=\"host \\\"a\\\"\\\\b\"} 1\n");
}

TEST(MetricsFormat, FloatValuesInGoSyntax) {
  EXPECT_EQ(format_value(0), "0");
  EXPECT_EQ(format_value(12), "12");
  EXPECT_EQ(format_value(-0.25), "-0.25");
  EXPECT_EQ(format_value(std::numeric_limits<double>::infinity()), "+Inf");
  EXPECT_EQ(format_value(-std::numeric_limits<double>::infinity()), "-Inf");
  EXPECT_EQ(format_value(std::nan("")), "NaN");
  EXPECT_EQ(std::stod(format_value(1.0 / 3)), 1.0 / 3);  // shortest round-trip text
}

TEST(MetricsFormat, NamesAreChecked) {
  EXPECT_TRUE(is_valid_metric_name("knit_relay_bytes_total"));
  EXPECT_TRUE(is_valid_metric_name("ns:sub_total"));
  EXPECT_FALSE(is_valid_metric_name(""));
  EXPECT_FALSE(is_valid_metric_name("9lives"));
  EXPECT_FALSE(is_valid_metric_name("has-dash"));
  EXPECT_FALSE(is_valid_metric_name("has space"));
  EXPECT_TRUE(is_valid_label_name("reason"));
  EXPECT_FALSE(is_valid_label_name("__name__"));
  EXPECT_FALSE(is_valid_label_name("a:b"));
  Registry registry;
  EXPECT_THROW(registry.counter("bad-name", "h"), std::invalid_argument);
  EXPECT_THROW(registry.counter("c", "h", {{"bad label", "v"}}), std::invalid_argument);
  EXPECT_THROW(registry.counter("c", "h", {{"a", "1"}, {"a", "2"}}), std::invalid_argument);
  registry.counter("c", "h");
  EXPECT_THROW(registry.gauge("c", "h"), std::invalid_argument);  // one family, one kind
}

TEST(MetricsFormat, CollectHooksRunBeforeRendering) {
  Registry registry;
  std::uint64_t outside = 0;
  Counter& mirrored = registry.counter("mirror_total", "kept elsewhere");
  registry.on_collect([&] { mirrored.set(outside); });
  outside = 41;
  EXPECT_NE(registry.render().find("mirror_total 41\n"), std::string::npos);
  outside = 42;
  EXPECT_NE(registry.render().find("mirror_total 42\n"), std::string::npos);
}
