#include "coordinator/mesh_settings.hpp"

#include "coordinator/ipam.hpp"

namespace knit::coordinator {

Result<std::optional<MeshSettings>> mesh_settings_from(const std::optional<std::string>& ipv4,
                                                       const std::optional<std::string>& ipv6) {
  if (!ipv4 || !ipv6) return std::optional<MeshSettings>();
  auto p4 = IpPrefix::parse(*ipv4);
  auto p6 = IpPrefix::parse(*ipv6);
  if (!p4 || !p6 || !Ipam::make(*p4, *p6))
    return Error{Errc::io,
                 "the database holds unusable mesh prefixes (" + *ipv4 + ", " + *ipv6 + ")"};
  return std::optional<MeshSettings>(MeshSettings{*p4, *p6});
}

}  // namespace knit::coordinator
