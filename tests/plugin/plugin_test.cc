// Out-of-tree connectors: loading a plugin library by path (the registry, a stage config's
// `plugin:` key, $OMNICONN_PLUGINS) and refusing one built for another omniconn.
#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>

#include "omniconn/config.h"
#include "omniconn/plugin.h"
#include "omniconn/registry.h"

namespace omniconn {
namespace {

TEST(Plugin, LoadsTheLibraryAndRegistersItsTypeWithCapabilities) {
  ConnectorRegistry r;
  ASSERT_TRUE(r.load_plugin(OMNICONN_FILE_CONNECTOR).ok());
  ASSERT_TRUE(r.load_plugin(OMNICONN_FILE_CONNECTOR).ok());  // once per path: no duplicate
  const ConnectorType* t = r.find("FileConnector");
  ASSERT_NE(t, nullptr);
  EXPECT_TRUE(t->capabilities.scoped_by_namespace);
  EXPECT_TRUE(t->capabilities.notices_dead_writer);
  EXPECT_FALSE(t->capabilities.reclaims_dead_reader);
  EXPECT_FALSE(t->capabilities.automatic);
  EXPECT_TRUE(r.validate({"FileConnector", Value(), ""}).ok());
}

TEST(Plugin, ResolveLoadsTheSpecsLibraryForAnUnknownType) {
  ConnectorRegistry r;
  auto t = r.resolve({"FileConnector", Value(), OMNICONN_FILE_CONNECTOR});
  ASSERT_TRUE(t.ok()) << t.status().ToString();
  EXPECT_EQ((*t)->name, "FileConnector");
  auto other = r.resolve({"SomethingElse", Value(), OMNICONN_FILE_CONNECTOR});
  ASSERT_FALSE(other.ok());
  EXPECT_NE(other.status().message().find("registers no type of that name"), std::string::npos)
      << other.status().ToString();
}

void expect_refused(const char* path, std::initializer_list<const char*> parts) {
  ConnectorRegistry r;
  Status st = r.load_plugin(path);
  EXPECT_EQ(st.code(), StatusCode::kInvalidArgument) << st.ToString();
  for (const char* p : parts) {
    EXPECT_NE(st.message().find(p), std::string::npos) << "'" << p << "' not in: " << st.ToString();
  }
  EXPECT_TRUE(r.type_names().empty());                     // nothing of a refused plugin is called
  EXPECT_EQ(r.load_plugin(path).message(), st.message());  // and it is not tried again
}

TEST(Plugin, AnotherPluginAbiIsRefusedWithWhatToDo) {
  expect_refused(OMNICONN_BAD_ABI_PLUGIN,
                 {"built for omniconn plugin ABI 3", "this omniconn has ABI 2",
                  "rebuild the plugin against the headers of omniconn " OMNICONN_VERSION_STRING});
}

TEST(Plugin, AnotherOmniconnVersionIsRefused) {
  expect_refused(
      OMNICONN_BAD_VERSION_PLUGIN,
      {"built against omniconn 0.0.1, this is omniconn " OMNICONN_VERSION_STRING, "rebuild"});
}

TEST(Plugin, ALibraryWithoutTheEntryPointIsNotAPlugin) {
  expect_refused(OMNICONN_NOT_A_PLUGIN, {"is not an omniconn connector plugin",
                                         "omniconn_plugin_entry", "OMNICONN_PLUGIN"});
}

TEST(Plugin, EnvironmentVariableLoadsEveryListedLibraryOnce) {
  ::setenv("OMNICONN_PLUGINS", ":" OMNICONN_FILE_CONNECTOR ":", 1);
  ConnectorRegistry r;
  EXPECT_TRUE(r.load_env_plugins().ok());
  EXPECT_NE(r.find("FileConnector"), nullptr);
  ::setenv("OMNICONN_PLUGINS", OMNICONN_BAD_ABI_PLUGIN, 1);
  EXPECT_TRUE(r.load_env_plugins().ok());  // read once per registry
  ConnectorRegistry fresh;
  Status st = fresh.load_env_plugins();
  EXPECT_NE(st.message().find("OMNICONN_PLUGINS"), std::string::npos) << st.ToString();
  ::unsetenv("OMNICONN_PLUGINS");
}

std::string plugin_config(const std::string& plugin_line, const std::string& extra) {
  return "runtime:\n"
         "  connectors:\n"
         "    files:\n"
         "      name: FileConnector\n" +
         plugin_line + "      extra: {" + extra +
         "}\n"
         "stage_args:\n"
         "  - {stage_id: 0, output_connectors: {to_stage_1: files}}\n"
         "  - {stage_id: 1, engine_input_source: [0], input_connectors: {from_stage_0: files}}\n";
}

TEST(Plugin, ConfigLoadsThePluginNamedBesideTheConnector) {
  std::string dir = std::filesystem::path(OMNICONN_FILE_CONNECTOR).parent_path().string();
  std::string name = std::filesystem::path(OMNICONN_FILE_CONNECTOR).filename().string();
  // Relative to the config file.
  ConfigLoad c = parse_pipeline_config(
      plugin_config("      plugin: " + name + "\n", "namespace: cfg"), dir + "/stages.yaml");
  for (const auto& e : c.errors) ADD_FAILURE() << e.ToString();
  ASSERT_EQ(c.config.edges.size(), 1u);
  EXPECT_EQ(c.config.edges[0].spec.type, "FileConnector");
  EXPECT_EQ(c.config.edges[0].spec.plugin, OMNICONN_FILE_CONNECTOR);
}

TEST(Plugin, ConfigPlacesThePluginsFieldErrorsAtTheirKeys) {
  ConfigLoad c = parse_pipeline_config(plugin_config("      plugin: " OMNICONN_FILE_CONNECTOR "\n",
                                                     "capacity_bytes: 0, colour: red"),
                                       "stages.yaml");
  ASSERT_EQ(c.errors.size(), 1u);
  EXPECT_EQ(c.errors[0].key_path, "runtime.connectors.files.extra.capacity_bytes");
  EXPECT_EQ(c.errors[0].line, 6);
  ASSERT_EQ(c.notes.size(), 1u);  // a key the plugin's type does not read
  EXPECT_EQ(c.notes[0].key_path, "runtime.connectors.files.extra.colour");
  EXPECT_EQ(c.notes[0].message, "not used by FileConnector (kept, passed on unread)");
}

TEST(Plugin, ConfigReportsALibraryThatCannotBeLoaded) {
  ConfigLoad c = parse_pipeline_config(
      plugin_config("      plugin: " OMNICONN_BAD_ABI_PLUGIN "\n", ""), "stages.yaml");
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.errors[0].key_path, "runtime.connectors.files.plugin");
  EXPECT_NE(c.errors[0].message.find("plugin ABI"), std::string::npos) << c.errors[0].ToString();
}

}  // namespace
}  // namespace omniconn
