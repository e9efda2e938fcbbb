# omniconn's version: the project's, the headers' (omniconn/version.h) and the plugin check's.
set(OMNICONN_VERSION 0.1.0)

# The source files of each library, relative to src/. One list per folder; the fuzz project
# compiles the same lists with its own instrumentation.
set(OMNICONN_CORE_SOURCES
  core/connector.cc core/connector_base.cc core/extra.cc core/payload.cc core/prometheus.cc
  core/registry.cc core/status.cc core/value.cc)
set(OMNICONN_SHM_SOURCES
  shm/shm_allocator.cc shm/shm_connector.cc shm/shm_descriptor.cc shm/shm_key_index.cc shm/shm_key_table.cc
  shm/shm_options.cc
  shm/shm_os.cc shm/shm_reader.cc shm/shm_ring.cc shm/shm_server.cc)
set(OMNICONN_MOONCAKE_SOURCES
  mooncake/mooncake_api.cc mooncake/mooncake_channel.cc mooncake/mooncake_connector.cc
  mooncake/mooncake_descriptor.cc mooncake/mooncake_options.cc mooncake/mooncake_store.cc
  mooncake/te_api.cc mooncake/te_engine.cc)
set(OMNICONN_CONFIG_SOURCES config/config.cc config/config_json.cc config/document.cc
                            config/yaml_reader.cc)
set(OMNICONN_METRICS_SOURCES metrics/metrics_server.cc)
set(OMNICONN_RUNTIME_SOURCES runtime/control.cc runtime/orchestrator.cc runtime/plan.cc
    runtime/report.cc runtime/run_metrics.cc runtime/stage.cc runtime/worker.cc)

# The connector types built into omniconn: the folder src/<name>/ defines
# `Status register_<name>_connector(ConnectorRegistry&)`. Adding a built-in connector is a
# folder, its source list above and its name here.
set(OMNICONN_BUILTIN_CONNECTORS shm mooncake)

# Writes <dir>/include/omniconn/version.h and <dir>/builtin_connectors.cc (the registry with
# every connector of OMNICONN_BUILTIN_CONNECTORS) from their templates.
function(omniconn_generate_sources source_root dir)
  string(REPLACE "." ";" parts ${OMNICONN_VERSION})
  list(GET parts 0 OMNICONN_VERSION_MAJOR)
  list(GET parts 1 OMNICONN_VERSION_MINOR)
  list(GET parts 2 OMNICONN_VERSION_PATCH)
  configure_file(${source_root}/include/omniconn/version.h.in
                 ${dir}/include/omniconn/version.h @ONLY)
  set(OMNICONN_BUILTIN_DECLARATIONS "")
  set(OMNICONN_BUILTIN_ENTRIES "")
  foreach(c IN LISTS OMNICONN_BUILTIN_CONNECTORS)
    string(APPEND OMNICONN_BUILTIN_DECLARATIONS
           "Status register_${c}_connector(ConnectorRegistry&);\n")
    string(APPEND OMNICONN_BUILTIN_ENTRIES "        {\"${c}\", &register_${c}_connector},\n")
  endforeach()
  configure_file(${source_root}/src/builtin_connectors.cc.in ${dir}/builtin_connectors.cc @ONLY)
endfunction()
