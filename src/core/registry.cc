// The connector registry and the loading of plugin libraries. ConnectorRegistry::instance()
// is defined with the built-in connectors (src/builtin_connectors.cc.in), so that linking the
// registry links every built-in type: no registration can be dropped by the linker.
#include "omniconn/registry.h"

#include <dlfcn.h>

#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <optional>
#include <set>

#include "omniconn/plugin.h"

namespace omniconn {

Status field_errors_status(std::string_view type, const FieldErrors& errors) {
  std::string msg;
  for (const FieldError& e : errors) {
    if (e.kind == FieldError::Kind::kUnknownKey) continue;  // kept and ignored, as vllm-omni does
    msg += (msg.empty() ? "" : "; ") + e.message;
  }
  if (msg.empty()) return Status::Ok();
  return Status::InvalidArgument(std::string(type) + " extra: " + msg);
}

struct ConnectorRegistry::Impl {
  mutable std::mutex mu;
  std::mutex load_mu;  // one plugin load at a time: a library is loaded and registered once
  std::map<std::string, ConnectorType, std::less<>> types;
  std::map<std::string, std::string, std::less<>> aliases;  // alias -> name
  std::map<std::string, Status> plugins;                    // by path: the result of loading it
  std::optional<Status> env_plugins;                        // the result of load_env_plugins
};

ConnectorRegistry::ConnectorRegistry() : impl_(std::make_unique<Impl>()) {}
ConnectorRegistry::~ConnectorRegistry() = default;

Status ConnectorRegistry::register_type(ConnectorType type) {
  if (type.name.empty() || !type.create || !type.validate) {
    return Status::InvalidArgument("connector type needs a name, validate and create");
  }
  std::lock_guard lock(impl_->mu);
  auto taken = [&](const std::string& n) {
    return impl_->types.contains(n) || impl_->aliases.contains(n);
  };
  if (taken(type.name)) {
    return Status::InvalidArgument("connector type '" + type.name + "' is already registered");
  }
  for (const std::string& alias : type.aliases) {
    if (taken(alias) || alias == type.name) {
      return Status::InvalidArgument("connector type '" + type.name + "': its alias '" + alias +
                                     "' is already registered");
    }
  }
  if (type.capabilities.automatic) {
    for (const auto& [name, t] : impl_->types) {
      if (t.capabilities.automatic) {
        return Status::InvalidArgument("connector type '" + type.name + "' and '" + name +
                                       "' both claim to be the automatic type");
      }
    }
  }
  for (const std::string& alias : type.aliases) impl_->aliases.emplace(alias, type.name);
  std::string name = type.name;
  impl_->types.emplace(std::move(name), std::move(type));
  return Status::Ok();
}

const ConnectorType* ConnectorRegistry::find(std::string_view name) const {
  std::lock_guard lock(impl_->mu);
  if (auto a = impl_->aliases.find(name); a != impl_->aliases.end()) name = a->second;
  auto it = impl_->types.find(name);
  return it == impl_->types.end() ? nullptr : &it->second;
}

const ConnectorType* ConnectorRegistry::automatic_type() const {
  std::lock_guard lock(impl_->mu);
  for (const auto& [name, t] : impl_->types) {
    if (t.capabilities.automatic) return &t;
  }
  return nullptr;
}

std::vector<std::string> ConnectorRegistry::type_names() const {
  std::lock_guard lock(impl_->mu);
  std::vector<std::string> names;
  for (const auto& [name, type] : impl_->types) names.push_back(name);
  return names;
}

// ---- plugins ------------------------------------------------------------------------------

namespace {

std::string join(const std::vector<std::string>& names) {
  std::string out;
  for (const auto& n : names) out += (out.empty() ? "" : ", ") + n;
  return out;
}

// The checks a plugin's description must pass before anything in it is called.
Status check_plugin(const omniconn_plugin* p, const std::string& path) {
  const std::string rebuild = "; rebuild the plugin against the headers of omniconn " +
                              std::string(OMNICONN_VERSION_STRING);
  if (p == nullptr) return Status::InvalidArgument(path + ": its entry point returned null");
  if (p->abi != OMNICONN_PLUGIN_ABI) {
    return Status::InvalidArgument(path + ": built for omniconn plugin ABI " +
                                   std::to_string(p->abi) + ", this omniconn has ABI " +
                                   std::to_string(OMNICONN_PLUGIN_ABI) + rebuild);
  }
  if (p->struct_size != sizeof(omniconn_plugin) || p->register_types == nullptr) {
    return Status::InvalidArgument(path + ": its plugin description is malformed" + rebuild);
  }
  auto text = [](const char* s) { return std::string(s != nullptr ? s : "(none)"); };
  if (text(p->omniconn_version) != OMNICONN_VERSION_STRING) {
    return Status::InvalidArgument(path + ": built against omniconn " + text(p->omniconn_version) +
                                   ", this is omniconn " + OMNICONN_VERSION_STRING + rebuild);
  }
  if (text(p->cxx_library) != OMNICONN_PLUGIN_CXX_LIBRARY) {
    return Status::InvalidArgument(path + ": built with " + text(p->cxx_library) +
                                   ", this omniconn with " + OMNICONN_PLUGIN_CXX_LIBRARY + rebuild);
  }
  return Status::Ok();
}

// Opens the library (never closed: its types' code must outlive every connector) and returns
// its checked description.
Result<const omniconn_plugin*> open_plugin(const std::string& path) {
  void* handle = ::dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (handle == nullptr) {
    const char* err = ::dlerror();
    return Status::InvalidArgument("cannot load connector plugin " + path + ": " +
                                   (err ? err : "dlopen failed"));
  }
  auto entry =
      reinterpret_cast<omniconn_plugin_entry_fn>(::dlsym(handle, OMNICONN_PLUGIN_ENTRY_SYMBOL));
  if (entry == nullptr) {
    ::dlclose(handle);
    return Status::InvalidArgument(path + " is not an omniconn connector plugin: it exports no " +
                                   OMNICONN_PLUGIN_ENTRY_SYMBOL +
                                   " (define it with OMNICONN_PLUGIN, see omniconn/plugin.h)");
  }
  const omniconn_plugin* p = entry();
  Status st = check_plugin(p, path);
  if (!st.ok()) {
    ::dlclose(handle);
    return st.WithContext("connector plugin");
  }
  return p;
}

}  // namespace

Status ConnectorRegistry::load_plugin(const std::string& path) {
  std::lock_guard loading(impl_->load_mu);
  {
    std::lock_guard lock(impl_->mu);
    if (auto it = impl_->plugins.find(path); it != impl_->plugins.end()) return it->second;
  }
  auto p = open_plugin(path);
  Status st = p.ok() ? (*p)->register_types(this) : p.status();
  if (p.ok() && !st.ok()) st = st.WithContext("connector plugin " + path + " (" + (*p)->name + ")");
  std::lock_guard lock(impl_->mu);
  return impl_->plugins.try_emplace(path, st).first->second;
}

Status ConnectorRegistry::load_env_plugins() {
  {
    std::lock_guard lock(impl_->mu);
    if (impl_->env_plugins) return *impl_->env_plugins;
  }
  Status result;
  const char* list = std::getenv("OMNICONN_PLUGINS");
  std::string_view rest = list != nullptr ? list : "";
  while (!rest.empty()) {
    size_t cut = rest.find(':');
    std::string path(rest.substr(0, cut));
    rest = cut == std::string_view::npos ? std::string_view() : rest.substr(cut + 1);
    if (path.empty()) continue;
    Status st = load_plugin(path);
    if (!st.ok() && result.ok()) result = st.WithContext("OMNICONN_PLUGINS");
  }
  std::lock_guard lock(impl_->mu);
  if (!impl_->env_plugins) impl_->env_plugins = result;
  return *impl_->env_plugins;
}

// ---- by spec ------------------------------------------------------------------------------

Result<const ConnectorType*> ConnectorRegistry::resolve(const ConnectorSpec& spec) {
  if (const ConnectorType* t = find(spec.type)) return t;
  Status env = load_env_plugins();
  Status plugin = spec.plugin.empty() ? Status::Ok() : load_plugin(spec.plugin);
  if (const ConnectorType* t = find(spec.type)) return t;
  std::string msg = "unknown connector type '" + spec.type + "'; available: " + join(type_names());
  if (!spec.plugin.empty() && plugin.ok()) {
    msg += " (" + spec.plugin + " loaded, but registers no type of that name)";
  }
  for (const Status* st : {&plugin, &env}) {
    if (!st->ok()) msg += " (" + st->message() + ")";
  }
  return Status::InvalidArgument(msg);
}

Status ConnectorRegistry::validate(const ConnectorSpec& spec) {
  OMNICONN_ASSIGN_OR_RETURN(const ConnectorType* type, resolve(spec));
  return field_errors_status(type->name, type->validate(spec.extra));
}

Result<std::unique_ptr<Connector>> ConnectorRegistry::create(const ConnectorSpec& spec) {
  OMNICONN_ASSIGN_OR_RETURN(const ConnectorType* type, resolve(spec));
  return type->create(spec);
}

}  // namespace omniconn
