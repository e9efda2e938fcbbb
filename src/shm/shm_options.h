// Reading the SharedMemoryConnector's `extra` settings.
#pragma once

#include "omniconn/registry.h"
#include "omniconn/shm_connector.h"

namespace omniconn::shm {

// Reads `extra` into *out (defaults for absent keys); returns every problem found.
FieldErrors read_shm_options(const Value& extra, ShmOptions* out);

}  // namespace omniconn::shm
