# Warnings, and when they are errors (KNIT_WERROR).
#
# The project's own builds treat every warning as an error: the default build type
# (RelWithDebInfo: what scripts/build.sh, CI and a plain `cmake -S . -B build` use) and Debug.
# A build that brings its own optimisation level or flags never fails on a warning: a Release
# or MinSizeRel build, a distribution's build type (Debian's is None) and any build configured
# with its own CXXFLAGS (dpkg-buildflags, a packager's -O3) get the same warnings without
# -Werror, because a newer or differently tuned compiler finds new false positives (GCC 12 at
# -O3 reports -Wrestrict inside libstdc++ for `"[" + std::string`, see below). Say
# -DKNIT_WERROR=ON or OFF to choose yourself; CI builds Release and dpkg-buildflags with ON
# (scripts/check-builds.sh), so a warning there still fails CI.
set(knit_werror_default OFF)
if(CMAKE_BUILD_TYPE MATCHES "^(RelWithDebInfo|Debug)$" AND "${CMAKE_CXX_FLAGS}" STREQUAL "")
  set(knit_werror_default ON)
endif()
option(KNIT_WERROR
       "Warnings are errors (default: ON for RelWithDebInfo and Debug without own CXXFLAGS)"
       ${knit_werror_default})

add_compile_options(-Wall -Wextra -Wpedantic -Wshadow -Wnon-virtual-dtor)
if(KNIT_WERROR)
  # Deprecations come from system headers we do not control: reported, never fatal.
  add_compile_options(-Werror -Wno-error=deprecated-declarations)
  # GCC 12's -Wrestrict misfires inside libstdc++'s std::string at -O3 (GCC bug 105329: an
  # assignment or insert of a short literal, "exabytes at negative offsets"; fixed in GCC 13).
  # Debian 12's compiler is GCC 12: there the warning is printed but never fatal, rather than
  # contorting correct code wherever the optimiser happens to inline a string operation.
  if(CMAKE_CXX_COMPILER_ID STREQUAL "GNU" AND CMAKE_CXX_COMPILER_VERSION VERSION_LESS 13)
    add_compile_options(-Wno-error=restrict)
  endif()
  # -Wmaybe-uninitialized is a guess of the optimiser, which GCC's manual says may be wrong, and
  # -O3's inlining makes it guess wrong (GCC 12, -O3: a std::string inside a std::variant
  # temporary of an initializer list, "may be used uninitialized"). It stays an error at -O2,
  # the level the project is developed and tested at, and is printed, not fatal, at -O3.
  # The same holds for GCC's object-size warnings, which run after inlining too: at -O3 GCC 12
  # reports -Warray-bounds inside libstdc++'s std::vector::resize of a six-byte vector ("offset
  # 6 is out of the bounds [0, 6]", GCC bug 107852 and its kin). Printed, not fatal, at -O3.
  if(CMAKE_CXX_COMPILER_ID STREQUAL "GNU")
    add_compile_options($<$<CONFIG:Release>:-Wno-error=maybe-uninitialized>
                        $<$<CONFIG:Release>:-Wno-error=array-bounds>
                        $<$<CONFIG:Release>:-Wno-error=stringop-overflow>
                        $<$<CONFIG:Release>:-Wno-error=stringop-overread>)
  endif()
endif()
message(STATUS "knit: ${CMAKE_BUILD_TYPE} build, warnings as errors: ${KNIT_WERROR}")
