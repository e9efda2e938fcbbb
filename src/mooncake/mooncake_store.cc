#include "mooncake/mooncake_store.h"

#include <arpa/inet.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstdlib>
#include <future>
#include <map>
#include <thread>

#include "core/bits.h"

namespace omniconn::mooncake {

namespace {

constexpr size_t kAlign = 64;  // payloads start 64-byte aligned (docs/format.md)
constexpr ReplicateConfig kPinned = pinned_config();

// Mooncake reads these when the client starts. On one host the transfer engine must advertise
// the loopback address (else it picks the first non-lo interface), and its INFO logging floods
// stderr. A value the user set is kept.
void prepare_environment(const MooncakeOptions& o) {
  in_addr addr{};
  if (std::getenv("MC_TCP_BIND_ADDRESS") == nullptr && inet_pton(AF_INET, o.host.c_str(), &addr)) {
    ::setenv("MC_TCP_BIND_ADDRESS", o.host.c_str(), 0);
  }
  ::setenv("MC_LOG_LEVEL", "WARNING", 0);
}

std::string own_segment_name(const Api& api, store_t store) {
  char name[1024] = {};
  return api.get_hostname(store, name, sizeof name) == 0 ? std::string(name) : std::string();
}

std::string client_key(const MooncakeOptions& o) {
  return o.library + '\n' + o.host + '\n' + o.metadata_server + '\n' + o.master + '\n' + o.proto +
         '\n' + o.rdma;
}

}  // namespace

bool Backoff::wait() {
  auto now = Clock::now();
  if (now >= deadline_) return false;
  std::this_thread::sleep_for(std::min<Clock::duration>(step_, deadline_ - now));
  step_ = std::min<Clock::duration>(step_ * 2, std::chrono::milliseconds(2));
  return true;
}

Result<std::shared_ptr<StoreClient>> StoreClient::open(const MooncakeOptions& o) {
  static std::mutex mu;
  static std::map<std::string, std::weak_ptr<StoreClient>> clients;
  static pid_t started_in = 0;  // the process that first started a Mooncake client
  std::lock_guard lock(mu);
  if (started_in != 0 && started_in != ::getpid()) {
    // Mooncake's threads do not survive fork, and its library state then hangs a new client.
    return Status::Unavailable(
        "MooncakeConnector: this process was forked from one that had already started a "
        "Mooncake client, and Mooncake cannot start again in a forked child: fork before the "
        "first MooncakeConnector is created, or exec / use multiprocessing's spawn");
  }
  std::string key = client_key(o);
  if (auto live = clients[key].lock()) return live;
  std::shared_ptr<StoreClient> c(new StoreClient());
  OMNICONN_RETURN_IF_ERROR(c->start(o, &started_in));
  clients[key] = c;
  return c;
}

Status StoreClient::start(const MooncakeOptions& o, pid_t* started_in) {
  OMNICONN_ASSIGN_OR_RETURN(api_, load_api(o.library));
  *started_in = ::getpid();  // from here on, Mooncake's state is in this process
  max_payload_ = o.max_payload_bytes;
  prepare_environment(o);
  // Mooncake's create() blocks SIGINT/SIGTERM/SIGHUP in the calling thread (for a sigwait
  // thread of its own, which then bypasses the host's handlers): let a short-lived thread take
  // that, so the caller's threads keep their signals.
  Status st;
  std::thread([&] {
    store_ = api_->create();
    if (store_ == nullptr) {
      st = Status::Unavailable("MooncakeConnector: mooncake_store_create failed");
      return;
    }
    int rc = api_->setup(store_, o.host.c_str(), o.metadata_server.c_str(), o.segment_bytes,
                         o.localbuf_bytes, o.proto.c_str(), o.rdma.c_str(), o.master.c_str());
    if (rc != 0) {
      st = to_status(rc, "setup (host " + o.host + ", master " + o.master + ", metadata " +
                             o.metadata_server + ")")
               .WithContext("is mooncake_master running and reachable?");
    }
  }).join();
  if (!st.ok()) return Status::Unavailable(st.ToString());
  segment_ = o.segment_bytes > 0 ? own_segment_name(*api_, store_) : "";
  void* pool =
      ::mmap(nullptr, o.localbuf_bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (pool == MAP_FAILED) return Status::ResourceExhausted("MooncakeConnector: mmap of localbuf");
  pool_ = static_cast<std::byte*>(pool);
  pool_bytes_ = o.localbuf_bytes;
  if (int rc = api_->register_buffer(store_, pool_, pool_bytes_); rc != 0) {
    return to_status(rc, "register_buffer (localbuf, " + std::to_string(pool_bytes_) + " bytes)");
  }
  free_.reset(pool_bytes_);
  return Status::Ok();
}

StoreClient::~StoreClient() {
  if (store_ != nullptr) {
    if (pool_ != nullptr) api_->unregister_buffer(store_, pool_);
    // destroy unmounts this process's segment on the master; with the master gone it can hang,
    // so it gets 5 s, then the process goes on without it.
    auto done = std::async(std::launch::async, [api = api_, s = store_] { api->destroy(s); });
    if (done.wait_for(std::chrono::seconds(5)) == std::future_status::timeout) {
      std::thread([d = std::move(done)]() mutable { d.wait(); }).detach();
    }
  }
  if (pool_ != nullptr) ::munmap(pool_, pool_bytes_);
}

Result<Region> StoreClient::acquire(size_t n, Deadline deadline) {
  if (n > max_payload_) {
    return Status::InvalidArgument("MooncakeConnector: payload of " + std::to_string(n) +
                                   " bytes exceeds max_payload_bytes (" +
                                   std::to_string(max_payload_) + ")");
  }
  size_t want = round_up(std::max<size_t>(n, 1), kAlign);
  if (want > pool_bytes_) return acquire_dedicated(n);
  std::unique_lock lock(mu_);
  for (;;) {
    if (auto off = free_.allocate(want)) {
      in_use_ += want;
      return Region{pool_ + *off, n, want};
    }
    if (freed_.wait_until(lock, deadline) == std::cv_status::timeout && Clock::now() >= deadline) {
      return Status::ResourceExhausted(
          "MooncakeConnector: localbuf (" + std::to_string(pool_bytes_) +
          " bytes) stayed full until the deadline; payloads being written or read hold it");
    }
  }
}

Result<Region> StoreClient::acquire_dedicated(size_t n) {
  void* p = ::mmap(nullptr, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) return Status::ResourceExhausted("MooncakeConnector: mmap failed");
  if (int rc = api_->register_buffer(store_, p, n); rc != 0) {
    ::munmap(p, n);
    return to_status(rc, "register_buffer (" + std::to_string(n) + " bytes)");
  }
  return Region{static_cast<std::byte*>(p), n, 0};
}

void StoreClient::release(const Region& r) {
  if (r.data == nullptr) return;
  if (r.reserved == 0) {
    api_->unregister_buffer(store_, r.data);
    ::munmap(r.data, r.size);
    return;
  }
  {
    std::lock_guard lock(mu_);
    free_.free(static_cast<uint64_t>(r.data - pool_), r.reserved);
    in_use_ -= r.reserved;
  }
  freed_.notify_all();
}

Result<bool> StoreClient::exists(const std::string& key, Deadline deadline) {
  Backoff backoff(deadline);
  for (;;) {
    int rc = api_->is_exist(store_, key.c_str());
    if (rc == 0 || rc == 1) return rc == 1;
    if (!retryable(rc) || !backoff.wait()) return to_status(rc, "is_exist '" + key + "'");
  }
}

Status StoreClient::put_pinned(const std::string& key, std::span<std::byte> bytes,
                               Deadline deadline) {
  Backoff backoff(deadline);
  for (;;) {
    int rc = api_->put_from(store_, key.c_str(), bytes.data(), bytes.size(), &kPinned);
    if (rc == 0) return Status::Ok();
    // OBJECT_NOT_FOUND from a put: the master revoked it after its transfer failed (seen with
    // a replica placed in the segment of a client that had just exited); the next put may be
    // placed elsewhere.
    if (!retryable(rc) && rc != kObjectNotFound) return to_status(rc, "put_from '" + key + "'");
    if (!backoff.wait()) {
      Status st = to_status(rc, "put_from '" + key + "' until the deadline");
      return rc == kNoAvailableHandle ? st : Status::Timeout(st.message());
    }
  }
}

Status StoreClient::put_preferring(const std::string& key, std::span<std::byte> bytes,
                                   const std::string& segment, Deadline deadline, bool* preferred) {
  const char* name = segment.c_str();
  const ReplicateConfig config = pinned_config(&name);
  *preferred = api_->put_from(store_, key.c_str(), bytes.data(), bytes.size(), &config) == 0;
  return *preferred ? Status::Ok() : put_pinned(key, bytes, deadline);
}

uint64_t StoreClient::pool_in_use() const {
  std::lock_guard lock(mu_);
  return in_use_;
}

}  // namespace omniconn::mooncake
