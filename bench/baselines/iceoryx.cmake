# iceoryx_bench: iceoryx 2.0 (Debian's packages) zero-copy publish/subscribe baseline. Optional:
# skipped unless the iceoryx headers/libraries (libiceoryx-posh-dev) and RouDi (iceoryx) are
# installed. Included from bench/baselines/CMakeLists.txt.
find_package(iceoryx_posh CONFIG QUIET)
find_program(ICEORYX_BENCH_ROUDI iox-roudi)
if(NOT iceoryx_posh_FOUND OR NOT ICEORYX_BENCH_ROUDI)
  message(STATUS "iceoryx_bench: skipped (iceoryx not installed: apt-get install iceoryx libiceoryx-posh-dev)")
  return()
endif()

add_executable(iceoryx_bench ${CMAKE_CURRENT_LIST_DIR}/iceoryx_bench.cc)
# iceoryx's include directory comes from an imported target, so it is a SYSTEM include: its
# headers do not trip our warnings.
target_compile_options(iceoryx_bench PRIVATE ${OMNICONN_WARNINGS})
target_compile_definitions(iceoryx_bench PRIVATE ICEORYX_BENCH_ROUDI="${ICEORYX_BENCH_ROUDI}")
target_link_libraries(iceoryx_bench PRIVATE iceoryx_posh::iceoryx_posh)
