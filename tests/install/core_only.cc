// Builds and reads a payload with omniconn::core alone: no connector, no yaml-cpp linked.
#include <omniconn/payload.h>

#include <cstdio>

int main() {
  const float data[4] = {1, 2, 3, 4};
  omniconn::PayloadBuilder b;
  if (!b.add_tensor("x", omniconn::DType::kF32, {4}, data).ok()) return 1;
  auto bytes = b.encode();
  if (!bytes.ok() || !omniconn::PayloadReader::open(*bytes).ok()) return 1;
  std::printf("install check: core only: ok (%zu bytes)\n", bytes->size());
  return 0;
}
