// The shields setting and the port forwards, kept across knitd restarts in the state directory
// (`filter.json`, mode 0600, replaced atomically):
//
//   {"shields_up": false,
//    "forwards": [{"proto": "tcp", "mesh_port": 8080, "target": "192.168.1.10:80"}]}
//
// A damaged file is reported and ignored (knitd starts with shields down and no forwards)
// rather than keeping knitd from starting.
#pragma once

#include <filesystem>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "localapi/filter_status.hpp"

namespace knit::agent {

inline constexpr const char* kFilterSettingsFile = "filter.json";
inline constexpr std::size_t kMaxForwards = 1024;

struct FilterSettings {
  bool shields_up = false;
  std::vector<localapi::ForwardRule> forwards;
  friend bool operator==(const FilterSettings&, const FilterSettings&) = default;
};

std::string encode_filter_settings(const FilterSettings& settings);
// nullopt with `why` set when the text is not a valid settings document.
std::optional<FilterSettings> parse_filter_settings(const std::string& text, std::string& why);

class ForwardStore {
 public:
  explicit ForwardStore(std::filesystem::path state_dir)
      : file_(std::move(state_dir) / kFilterSettingsFile) {}
  // Defaults when there is no file; throws std::runtime_error (one line) when it is unreadable
  // or damaged.
  FilterSettings load() const;
  // Throws std::runtime_error when the file cannot be written.
  void save(const FilterSettings& settings) const;
  const std::filesystem::path& file() const { return file_; }

 private:
  std::filesystem::path file_;
};

}  // namespace knit::agent
