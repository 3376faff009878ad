# Shared build settings: warnings, sanitizers and a test-registration helper.
add_library(spush_warnings INTERFACE)
target_compile_options(spush_warnings INTERFACE
  $<$<COMPILE_LANGUAGE:CXX>:-Wall -Wextra -Wno-unused-parameter>
  $<$<COMPILE_LANGUAGE:CUDA>:-Xcompiler=-Wall --expt-relaxed-constexpr>)
if(SPUSH_SANITIZE)
  target_compile_options(spush_warnings INTERFACE
    $<$<COMPILE_LANGUAGE:CXX>:-fsanitize=${SPUSH_SANITIZE} -fno-omit-frame-pointer -fno-sanitize-recover=all>)
  target_link_options(spush_warnings INTERFACE -fsanitize=${SPUSH_SANITIZE})
endif()
# SPUSH_FUZZ: every library compiled for libFuzzer (coverage counters, no main) under ASan and
# UBSan, a UBSan report aborting like an ASan one so that the fuzzer sees it; the harnesses of
# fuzz/ add -fsanitize=fuzzer when they link.
if(SPUSH_FUZZ)
  target_compile_options(spush_warnings INTERFACE
    $<$<COMPILE_LANGUAGE:CXX>:-fsanitize=fuzzer-no-link,address,undefined -fno-omit-frame-pointer
                              -fno-sanitize-recover=all>)
  target_link_options(spush_warnings INTERFACE -fsanitize=address,undefined)
endif()

# spush_add_test(NAME <name> SOURCES <files...> LIBS <libs...> [LABELS <labels...>])
# One gtest executable; each TEST becomes a ctest entry carrying LABELS.
function(spush_add_test)
  cmake_parse_arguments(T "" "NAME" "SOURCES;LIBS;LABELS" ${ARGN})
  add_executable(${T_NAME} ${T_SOURCES})
  target_link_libraries(${T_NAME} PRIVATE ${T_LIBS} GTest::gtest GTest::gtest_main spush_warnings)
  target_include_directories(${T_NAME} PRIVATE ${PROJECT_SOURCE_DIR}/tests)
  target_compile_definitions(${T_NAME} PRIVATE SPUSH_SOURCE_DIR="${PROJECT_SOURCE_DIR}"
                                               SPUSH_BINARY_DIR="${PROJECT_BINARY_DIR}")
  gtest_discover_tests(${T_NAME} DISCOVERY_TIMEOUT 60
                       PROPERTIES LABELS "${T_LABELS}" ENVIRONMENT "OMP_NUM_THREADS=2")
endfunction()

# spush_add_layer_library(<target> <dir> LIBS <libs...>): one library per top-level folder,
# sources globbed from <dir>/src/*.cpp, public headers in <dir>/include.
function(spush_add_layer_library target dir)
  cmake_parse_arguments(L "" "" "LIBS" ${ARGN})
  file(GLOB srcs CONFIGURE_DEPENDS ${dir}/src/*.cpp)
  add_library(${target} ${srcs})
  target_include_directories(${target} PUBLIC ${dir}/include)
  target_link_libraries(${target} PUBLIC ${L_LIBS} PRIVATE spush_warnings)
endfunction()

