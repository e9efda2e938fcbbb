# The libraries omniconn builds with, all from Debian packages (scripts/deps.sh installs them).
# Included by the top-level project and by the standalone fuzz project.
find_package(Threads REQUIRED)
find_package(PkgConfig REQUIRED)
pkg_check_modules(XXHASH REQUIRED IMPORTED_TARGET libxxhash)  # libxxhash-dev
find_package(yaml-cpp REQUIRED)                                # libyaml-cpp-dev: target yaml-cpp
find_package(nlohmann_json 3 REQUIRED)                         # nlohmann-json3-dev

# msgpack-cxx (libmsgpack-cxx-dev, header-only): Debian 12 installs its package config as
# cmake/msgpackc-cxx/msgpack-config.cmake (target msgpackc-cxx), beside the C library's own
# cmake/msgpack, so the directory is named.
find_package(msgpack-cxx CONFIG QUIET)
if(TARGET msgpack-cxx)
  set(OMNICONN_MSGPACK msgpack-cxx)
else()
  find_package(msgpackc-cxx CONFIG REQUIRED NAMES msgpack
               HINTS /usr/lib/${CMAKE_LIBRARY_ARCHITECTURE}/cmake/msgpackc-cxx NO_DEFAULT_PATH)
  set(OMNICONN_MSGPACK msgpackc-cxx)
endif()
if(NOT TARGET ${OMNICONN_MSGPACK})
  message(FATAL_ERROR "msgpack-cxx not found: apt-get install libmsgpack-cxx-dev")
endif()

# ZeroMQ (libzmq3-dev; cppzmq-dev: the header-only C++ binding): the control channel between
# the orchestrator and the stage workers of other hosts.
pkg_check_modules(ZMQ REQUIRED IMPORTED_TARGET libzmq)

# cpp-httplib (libcpp-httplib-dev): serves /metrics (omniconn run --metrics, MetricsServer) and
# scrapes it (omniconn stats).
pkg_check_modules(HTTPLIB REQUIRED IMPORTED_TARGET cpp-httplib)
