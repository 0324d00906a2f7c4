#include "base/metrics.hpp"

#include <charconv>
#include <cmath>
#include <stdexcept>

namespace knit::metrics {

namespace {

bool is_name_start(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
}

bool is_digit(char c) { return c >= '0' && c <= '9'; }

std::string render_labels(std::string_view family, const Labels& labels) {
  if (labels.empty()) return {};
  std::string out = "{";
  for (std::size_t i = 0; i < labels.size(); ++i) {
    const auto& [name, value] = labels[i];
    if (!is_valid_label_name(name))
      throw std::invalid_argument("metric " + std::string(family) + ": bad label name '" + name +
                                  "'");
    for (std::size_t j = 0; j < i; ++j)
      if (labels[j].first == name)
        throw std::invalid_argument("metric " + std::string(family) + ": label '" + name +
                                    "' given twice");
    if (i > 0) out += ',';
    out += name;
    out += "=\"";
    out += escape_label_value(value);
    out += '"';
  }
  out += '}';
  return out;
}

}  // namespace

bool is_valid_metric_name(std::string_view name) {
  if (name.empty() || !(is_name_start(name[0]) || name[0] == ':')) return false;
  for (char c : name)
    if (!(is_name_start(c) || is_digit(c) || c == ':')) return false;
  return true;
}

bool is_valid_label_name(std::string_view name) {
  if (name.empty() || !is_name_start(name[0])) return false;
  if (name.starts_with("__")) return false;  // reserved for Prometheus itself
  for (char c : name)
    if (!(is_name_start(c) || is_digit(c))) return false;
  return true;
}

std::string escape_label_value(std::string_view value) {
  std::string out;
  out.reserve(value.size());
  for (char c : value) {
    if (c == '\\')
      out += "\\\\";
    else if (c == '"')
      out += "\\\"";
    else if (c == '\n')
      out += "\\n";
    else
      out += c;
  }
  return out;
}

std::string escape_help(std::string_view help) {
  std::string out;
  out.reserve(help.size());
  for (char c : help) {
    if (c == '\\')
      out += "\\\\";
    else if (c == '\n')
      out += "\\n";
    else
      out += c;
  }
  return out;
}

std::string format_value(double value) {
  if (std::isnan(value)) return "NaN";
  if (std::isinf(value)) return value > 0 ? "+Inf" : "-Inf";
  char buffer[32];
  auto [end, ec] = std::to_chars(buffer, buffer + sizeof buffer, value);
  if (ec != std::errc()) return "NaN";
  return std::string(buffer, end);
}

Registry::Sample& Registry::sample(std::string_view name, std::string_view help, Kind kind,
                                   const Labels& labels) {
  if (!is_valid_metric_name(name))
    throw std::invalid_argument("bad metric name '" + std::string(name) + "'");
  std::string rendered = render_labels(name, labels);
  Family* family = nullptr;
  for (auto& f : families_)
    if (f->name == name) family = f.get();
  if (family == nullptr) {
    families_.push_back(std::make_unique<Family>(Family{std::string(name), std::string(help), kind, {}}));
    family = families_.back().get();
  } else if (family->kind != kind) {
    throw std::invalid_argument("metric " + std::string(name) +
                                " declared as both a counter and a gauge");
  }
  for (auto& s : family->samples)
    if (s->labels == rendered) return *s;
  family->samples.push_back(std::make_unique<Sample>());
  family->samples.back()->labels = std::move(rendered);
  return *family->samples.back();
}

Counter& Registry::counter(std::string_view name, std::string_view help, const Labels& labels) {
  return sample(name, help, Kind::counter, labels).counter;
}

Gauge& Registry::gauge(std::string_view name, std::string_view help, const Labels& labels) {
  return sample(name, help, Kind::gauge, labels).gauge;
}

void Registry::on_collect(std::function<void()> collect) {
  collectors_.push_back(std::move(collect));
}

std::string Registry::render() {
  for (auto& collect : collectors_) collect();
  std::string out;
  for (const auto& family : families_) {
    out += "# HELP " + family->name + ' ' + escape_help(family->help) + '\n';
    out += "# TYPE " + family->name + (family->kind == Kind::counter ? " counter\n" : " gauge\n");
    for (const auto& s : family->samples) {
      out += family->name;
      out += s->labels;
      out += ' ';
      out += family->kind == Kind::counter ? std::to_string(s->counter.value())
                                           : format_value(s->gauge.value());
      out += '\n';
    }
  }
  return out;
}

}  // namespace knit::metrics
