// Uses an installed omniconn through its public headers only: encodes a one-tensor payload,
// reads it back, creates a SharedMemoryConnector through the registry and loads a config.
#include <cstdio>
#include <cstring>
#include <vector>

#include <omniconn/config.h>
#include <omniconn/connector.h>
#include <omniconn/payload.h>
#include <omniconn/registry.h>

namespace {

int fail(const char* what, const omniconn::Status& status) {
  std::fprintf(stderr, "install check: %s: %s\n", what, status.ToString().c_str());
  return 1;
}

}  // namespace

int main() {
  const std::vector<float> data = {1.0f, 2.0f, 3.0f, 4.0f, 5.0f, 6.0f};

  omniconn::PayloadBuilder builder;
  if (auto st = builder.add_tensor("hidden", omniconn::DType::kF32, {2, 3}, data.data()); !st.ok())
    return fail("add_tensor", st);
  auto encoded = builder.encode();
  if (!encoded.ok()) return fail("encode", encoded.status());

  auto reader = omniconn::PayloadReader::open(*encoded);
  if (!reader.ok()) return fail("PayloadReader::open", reader.status());
  const omniconn::TensorView* t = reader->find("hidden");
  if (t == nullptr || t->dtype != omniconn::DType::kF32 || t->numel() != data.size() ||
      t->data.size() != data.size() * sizeof(float) ||
      std::memcmp(t->data.data(), data.data(), t->data.size()) != 0) {
    std::fprintf(stderr, "install check: tensor 'hidden' did not round-trip\n");
    return 1;
  }

  omniconn::Value::Map extra;
  extra["shm_threshold_bytes"] = omniconn::Value(65536);
  auto connector = omniconn::create_connector({"SharedMemoryConnector", omniconn::Value(extra)});
  if (!connector.ok()) return fail("create_connector", connector.status());
  if (auto st = (*connector)->health(); !st.ok()) return fail("health", st);

  auto config = omniconn::parse_pipeline_config("stage_args: [{stage_id: 0}]", "inline.yaml");
  if (!config.ok()) {
    std::fprintf(stderr, "install check: config: %s\n", config.errors[0].ToString().c_str());
    return 1;
  }

  std::printf("install check: ok (payload %zu bytes, connector %.*s)\n", encoded->size(),
              static_cast<int>((*connector)->type_name().size()), (*connector)->type_name().data());
  return 0;
}
