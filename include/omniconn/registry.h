// The connector registry: every connector type, built in or loaded from a plugin library,
// with what the rest of omniconn needs to know about it (its settings check, its factory and
// its capabilities). The config loader, the runtime and the tests ask the registry; none of
// them names a connector type.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "omniconn/connector.h"
#include "omniconn/status.h"
#include "omniconn/value.h"

namespace omniconn {

// How a connector is configured: `{name: <type>, extra: {...}}` in a stage config, plus the
// library that provides the type when it is not built in (a plugin, see plugin.h).
struct ConnectorSpec {
  std::string type;         // e.g. "SharedMemoryConnector"
  Value extra;              // map or nil
  std::string plugin = {};  // a plugin library to load when `type` is unknown; may be ""
};

// What a connector type can do, for the code that must treat types differently.
struct ConnectorCapabilities {
  // Channels are named within `extra.namespace`: the runtime gives each run its own, so that
  // what an earlier run left behind never meets this one.
  bool scoped_by_namespace = false;
  // recv returns Unavailable (not a timeout) once a dead writer's queued payloads are read.
  bool notices_dead_writer = false;
  // Space a killed reader held comes back to the writer (Metrics::reclaimed).
  bool reclaims_dead_reader = false;
  // Writer and reader may run on different hosts.
  bool reaches_other_hosts = false;
  // A process forked after a connector of this type was created can create its own.
  bool usable_after_fork = true;
  // The type made for an edge that names no connector (one type has this), with the `extra`
  // below. vllm-omni makes a SharedMemoryConnector there.
  bool automatic = false;
};

// One problem with one `extra` setting.
struct FieldError {
  enum class Kind {
    kUnknownKey,  // a key the type does not read
    kBadValue,    // a known key with a value of the wrong kind or out of range
    kConflict,    // settings that disagree with each other
  };
  Kind kind = Kind::kBadValue;
  std::string key;  // the `extra` key it is about; "" for `extra` as a whole
  std::string message;
};
using FieldErrors = std::vector<FieldError>;

// "<type> extra: key: message; ..." as one InvalidArgument (OK when there are no errors).
// Keys the type does not read (kUnknownKey) are not errors here: a connector is created with
// settings meant for other parts (vllm-omni's codec keys); the config loader notes them.
Status field_errors_status(std::string_view type, const FieldErrors& errors);

struct ConnectorType {
  std::string name;
  // Other names a config may use for this type (vllm-omni renamed MooncakeConnector to
  // MooncakeStoreConnector and kept the old name): find() takes them, specs keep `name`.
  std::vector<std::string> aliases = {};
  ConnectorCapabilities capabilities;
  Value automatic_extra;  // `extra` of an automatic connector (capabilities.automatic)
  // `extra` keys whose values may differ from host to host in one multi-host run (a node's
  // own address): the runtime leaves them out when it checks that every host loaded the same
  // config.
  std::vector<std::string> host_local_keys = {};
  // Checks `extra` without creating anything.
  std::function<FieldErrors(const Value& extra)> validate;
  std::function<Result<std::unique_ptr<Connector>>(const ConnectorSpec&)> create;
};

class ConnectorRegistry {
 public:
  // The process's registry, holding the built-in types (linking this function links them).
  static ConnectorRegistry& instance();

  ConnectorRegistry();  // empty; tests build their own
  ~ConnectorRegistry();
  ConnectorRegistry(const ConnectorRegistry&) = delete;
  ConnectorRegistry& operator=(const ConnectorRegistry&) = delete;

  // InvalidArgument for a type without name, validate or create, or a name already taken.
  Status register_type(ConnectorType type);
  // By name or alias; nullptr when unknown.
  const ConnectorType* find(std::string_view name) const;
  const ConnectorType* automatic_type() const;  // nullptr when none registered
  std::vector<std::string> type_names() const;

  // Loads a plugin library (plugin.h) and registers its types; a path already loaded is not
  // loaded again. The error names the library and what to do (a wrong ABI: rebuild it).
  Status load_plugin(const std::string& path);
  // Loads every library named by $OMNICONN_PLUGINS (paths separated by ':'), once per process;
  // later calls return the first call's result.
  Status load_env_plugins();

  // The type of `spec`: loads spec.plugin (and $OMNICONN_PLUGINS) first when the type is not
  // registered. InvalidArgument naming the registered types when it stays unknown.
  Result<const ConnectorType*> resolve(const ConnectorSpec& spec);
  Status validate(const ConnectorSpec& spec);
  Result<std::unique_ptr<Connector>> create(const ConnectorSpec& spec);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

inline Result<std::unique_ptr<Connector>> create_connector(const ConnectorSpec& spec) {
  return ConnectorRegistry::instance().create(spec);
}

}  // namespace omniconn
