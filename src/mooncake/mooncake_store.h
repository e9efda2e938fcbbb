// One Mooncake store client per process and configuration, shared by the MooncakeConnectors
// of that process, with a pool of registered memory that payloads are written into and read
// into (put_from / get_into: Mooncake moves the bytes, omniconn copies nothing).
#pragma once

#include <sys/types.h>

#include <condition_variable>
#include <cstddef>
#include <memory>
#include <mutex>
#include <span>
#include <string>

#include "core/range_allocator.h"
#include "mooncake/mooncake_api.h"
#include "mooncake/mooncake_options.h"
#include "omniconn/deadline.h"

namespace omniconn::mooncake {

// Registered memory for one payload: a range of the pool, or a mapping of its own (registered
// for this payload alone) when the payload is larger than the pool.
struct Region {
  std::byte* data = nullptr;
  size_t size = 0;      // what the caller asked for
  size_t reserved = 0;  // what was taken from the pool (0 for a dedicated region)
};

// Sleeps between polls: 50 us doubling to 2 ms, never past the deadline.
class Backoff {
 public:
  explicit Backoff(Deadline deadline) : deadline_(deadline) {}
  // False once the deadline has passed (nothing slept).
  bool wait();

 private:
  Deadline deadline_;
  Clock::duration step_ = std::chrono::microseconds(50);
};

class StoreClient {
 public:
  // The client for these options, created on first use (setup runs on a thread of its own, so
  // that the signal mask Mooncake sets up for its signal thread never reaches the caller's).
  static Result<std::shared_ptr<StoreClient>> open(const MooncakeOptions& o);
  ~StoreClient();
  StoreClient(const StoreClient&) = delete;
  StoreClient& operator=(const StoreClient&) = delete;

  const Api& api() const { return *api_; }
  store_t store() const { return store_; }

  // Registered memory of `n` bytes; waits for pool space until `deadline` (backpressure).
  Result<Region> acquire(size_t n, Deadline deadline);
  void release(const Region& r);

  // is_exist, retried through transient errors until the deadline: an error is never taken
  // for "absent".
  Result<bool> exists(const std::string& key, Deadline deadline);
  // put_from of registered memory, hard-pinned (a payload nobody has read must never be
  // evicted), retried through transient errors; a store still full at the deadline is
  // ResourceExhausted. The key must not exist yet: Mooncake keeps the first value of a key.
  Status put_pinned(const std::string& key, std::span<std::byte> bytes, Deadline deadline);
  // put_pinned with the replica placed on `segment` first. The master takes another segment
  // when that one is full or gone, without saying so; should the put fail all the same, it is
  // made again without the preference (put_pinned: same key, so never twice). *preferred: the
  // put that succeeded named the segment.
  Status put_preferring(const std::string& key, std::span<std::byte> bytes,
                        const std::string& segment, Deadline deadline, bool* preferred);

  // This client's segment name, "host:port" (get_hostname): what a put's preferred_segments
  // names. "" when it contributes no segment (segment 0) or Mooncake did not say.
  const std::string& segment_name() const { return segment_; }

  uint64_t pool_bytes() const { return pool_bytes_; }
  uint64_t pool_in_use() const;

 private:
  StoreClient() = default;
  Status start(const MooncakeOptions& o, pid_t* started_in);
  Result<Region> acquire_dedicated(size_t n);

  std::shared_ptr<const Api> api_;
  store_t store_ = nullptr;
  std::byte* pool_ = nullptr;
  uint64_t pool_bytes_ = 0;
  uint64_t max_payload_ = 0;
  std::string segment_;

  mutable std::mutex mu_;
  std::condition_variable freed_;
  RangeAllocator free_;
  uint64_t in_use_ = 0;
};

}  // namespace omniconn::mooncake
