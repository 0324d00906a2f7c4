#include "coordinator/names.hpp"

namespace knit::coordinator {

std::string sanitize_label(std::string_view hostname) {
  // A host may report an FQDN; its first label is the name people use.
  hostname = hostname.substr(0, hostname.find('.'));
  std::string out;
  bool pending_dash = false;
  for (char c : hostname) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    bool keep = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
    if (!keep) {
      pending_dash = !out.empty();
      continue;
    }
    if (pending_dash) out.push_back('-');
    pending_dash = false;
    out.push_back(c);
    if (out.size() >= kMaxLabel) break;
  }
  while (!out.empty() && out.back() == '-') out.pop_back();
  if (out.size() > kMaxLabel) out.resize(kMaxLabel);
  while (!out.empty() && out.back() == '-') out.pop_back();
  return out.empty() ? std::string("node") : out;
}

std::string unique_name(const std::string& base,
                        const std::function<bool(const std::string&)>& taken) {
  if (!taken(base)) return base;
  for (unsigned n = 2;; ++n) {
    std::string suffix = "-" + std::to_string(n);
    std::string stem = base.substr(0, kMaxLabel - suffix.size());
    while (!stem.empty() && stem.back() == '-') stem.pop_back();
    std::string candidate = stem + suffix;
    if (!taken(candidate)) return candidate;
  }
}

}  // namespace knit::coordinator
