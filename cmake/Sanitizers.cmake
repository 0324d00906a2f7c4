# Compiler-specific flags, sanitizers and fuzzing instrumentation, for every target.
#
#   -DKNIT_SANITIZE=address,undefined   ASan + UBSan, any finding aborts (scripts/sanitize.sh)
#   -DKNIT_SANITIZE=thread              ThreadSanitizer for the multi-threaded data plane
#                                       (scripts/sanitize.sh --tsan builds and runs its tests)
#   -DKNIT_BUILD_FUZZERS=ON             clang only: libraries get libFuzzer's coverage
#                                       instrumentation, fuzz/ its targets (scripts/fuzz.sh)
# Both may be combined: one clang build then serves the sanitizer job and the fuzzers.

if(CMAKE_CXX_COMPILER_ID MATCHES "Clang")
  # Clang-only warnings that GCC lacks stay errors; none needs switching off today.
  set(KNIT_COMPILER_IS_CLANG TRUE)
else()
  set(KNIT_COMPILER_IS_CLANG FALSE)
endif()

if(KNIT_SANITIZE)
  if(KNIT_SANITIZE MATCHES "thread" AND KNIT_SANITIZE MATCHES "address")
    message(FATAL_ERROR "KNIT_SANITIZE: thread cannot be combined with address")
  endif()
  set(knit_san_flags -fsanitize=${KNIT_SANITIZE} -fno-sanitize-recover=all
      -fno-omit-frame-pointer)
  add_compile_options(${knit_san_flags})
  add_link_options(${knit_san_flags})
  message(STATUS "knit: sanitizers ${KNIT_SANITIZE}")
endif()

if(KNIT_BUILD_FUZZERS)
  if(NOT KNIT_COMPILER_IS_CLANG)
    message(FATAL_ERROR "KNIT_BUILD_FUZZERS needs clang (libFuzzer): "
                        "CC=clang CXX=clang++ cmake -DKNIT_BUILD_FUZZERS=ON ...")
  endif()
  # Coverage feedback for every library; the fuzz targets link -fsanitize=fuzzer (fuzz/).
  add_compile_options(-fsanitize=fuzzer-no-link)
endif()
