# knit_library(NAME LINK deps... [EXCLUDE files...]): a library built from every .cpp of the
# calling folder (except *_main.cpp, which are programs, and the EXCLUDE files, which another
# library of the folder holds), linking deps publicly.
function(knit_library name)
  cmake_parse_arguments(ARG "" "" "LINK;EXCLUDE" ${ARGN})
  file(GLOB sources CONFIGURE_DEPENDS ${CMAKE_CURRENT_SOURCE_DIR}/*.cpp)
  list(FILTER sources EXCLUDE REGEX ".*_main\\.cpp$")
  foreach(excluded ${ARG_EXCLUDE})
    list(REMOVE_ITEM sources ${CMAKE_CURRENT_SOURCE_DIR}/${excluded})
  endforeach()
  add_library(${name} ${sources})
  target_link_libraries(${name} PUBLIC ${ARG_LINK})
endfunction()
