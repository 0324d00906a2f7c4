// The nine RFC 4787 behaviours (three mappings by three filterings) as a gtest parameter, for
// the NAT tests that must hold for each: INSTANTIATE_TEST_SUITE_P(AllNine, Suite,
// all_nine_behaviours(), behaviour_name) names the cases EimEif ... ApdmApdf.
#pragma once

#include <gtest/gtest.h>

#include <string>
#include <tuple>

#include "nat/nat_engine.hpp"

namespace knit::testing {

using NatCombination = std::tuple<nat::Mapping, nat::Filtering>;

inline auto all_nine_behaviours() {
  using nat::Filtering;
  using nat::Mapping;
  return ::testing::Combine(::testing::Values(Mapping::endpoint_independent, Mapping::address_dependent,
                                              Mapping::address_and_port_dependent),
                            ::testing::Values(Filtering::endpoint_independent, Filtering::address_dependent,
                                              Filtering::address_and_port_dependent));
}

inline std::string behaviour_name(const ::testing::TestParamInfo<NatCombination>& info) {
  static const char* m[] = {"Eim", "Adm", "Apdm"};
  static const char* f[] = {"Eif", "Adf", "Apdf"};
  return std::string(m[static_cast<int>(std::get<0>(info.param))]) + f[static_cast<int>(std::get<1>(info.param))];
}

}  // namespace knit::testing
