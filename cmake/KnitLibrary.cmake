# knit_library(NAME LINK deps...): a library built from every .cpp of the calling folder
# (except *_main.cpp, which are programs), linking deps publicly.
function(knit_library name)
  cmake_parse_arguments(ARG "" "" "LINK" ${ARGN})
  file(GLOB sources CONFIGURE_DEPENDS ${CMAKE_CURRENT_SOURCE_DIR}/*.cpp)
  list(FILTER sources EXCLUDE REGEX ".*_main\\.cpp$")
  add_library(${name} ${sources})
  target_link_libraries(${name} PUBLIC ${ARG_LINK})
endfunction()
