// Node names: each node gets a unique DNS label (RFC 1035 §2.3.1, lowercase) derived from the
// hostname it reports. A name taken by another node key gets a suffix: laptop, laptop-2, ...
#pragma once

#include <functional>
#include <string>
#include <string_view>

namespace knit::coordinator {

inline constexpr std::size_t kMaxLabel = 63;

// Lowercases, turns every run of other characters into one '-', trims '-' from both ends and
// cuts to 63 characters. "My Laptop (work)" -> "my-laptop-work"; nothing usable -> "node".
std::string sanitize_label(std::string_view hostname);

// The first of base, base-2, base-3, ... for which taken() is false; the base is shortened so
// the suffixed name still fits in 63 characters. base must already be sanitised.
std::string unique_name(const std::string& base,
                        const std::function<bool(const std::string&)>& taken);

}  // namespace knit::coordinator
