// A test double for Mooncake's Store C API (mooncake_store_*), used in CI where the real
// libmooncake_store.so is absent. MooncakeConnector dlopen()s it like the real library.
//
// The store lives on disk so that forked producer and consumer processes share it:
//   <dir>/obj/<name>    one file per object: a header (see kHeader), the key, then the bytes.
//                       <name> is hex(key), or "L" + hex(fnv1a64(key)) for keys over 100 bytes.
//   <dir>/tmp/<unique>  objects being written; rename()d into obj/ to publish atomically.
//   <dir>/lease/<name>  read lease: expiry as CLOCK_REALTIME nanoseconds, in decimal.
//   <dir>/lock          flock()ed around every metadata decision; its first 8 bytes hold the
//                       creation sequence counter (orders eviction, oldest first).
// Setup takes <dir> from metadata_server "fake:<dir>" (master_server_addr is not used). The
// store's capacity is this client's global_segment_size (as if it were the only segment), or
// 1 GiB for a segment of 0. Env, read at setup:
//   OMNICONN_FAKE_MOONCAKE_CAPACITY  store capacity in bytes (overrides the segment size)
//   OMNICONN_FAKE_MOONCAKE_LEASE_MS  read lease length in ms (default 10000)
// Test hooks (omniconn_fake_mooncake_*) inject failures and report per-process counters.
// preferred_segments are accepted and otherwise ignored (one store, no segments); a put_from
// that names one also counts as, and takes injections of, the pseudo-function
// "put_from_preferred", and omniconn_fake_mooncake_last_preferred() tells the name.
#include <dirent.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <regex>
#include <string>
#include <vector>

#define FAKE_API extern "C" __attribute__((visibility("default")))

// The types of Mooncake's store_c.h, declared here with the same layout.
extern "C" {
typedef void* mooncake_store_t;
struct mooncake_replicate_config {
  size_t replica_num;
  int with_soft_pin;
  int with_hard_pin;
  const char** preferred_segments;
  size_t preferred_segments_count;
};
typedef struct mooncake_replicate_config mooncake_replicate_config_t;
}

namespace {

// Mooncake's error codes. -703 REPLICA_IS_NOT_READY and -707 LEASE_EXPIRED are never produced
// by the fake itself; tests get them through omniconn_fake_mooncake_inject().
constexpr int kWrapperFail = -1;      // bad argument / NULL in the C wrapper
constexpr int kNoHandle = -200;       // NO_AVAILABLE_HANDLE: the store is full
constexpr int kInvalidParams = -600;  // INVALID_PARAMS
constexpr int kNotFound = -704;       // OBJECT_NOT_FOUND
constexpr int kHasLease = -706;       // OBJECT_HAS_LEASE
constexpr int kTransferFail = -800;   // TRANSFER_FAIL: local I/O error on an object file
constexpr int kRpcFail = -900;        // RPC_FAIL: "master" (the store directory) unreachable

constexpr uint32_t kHardPin = 1, kSoftPin = 2;
constexpr char kMagic[4] = {'O', 'C', 'F', 'M'};
constexpr size_t kHeader = 24;  // magic[4], u32 flags, u64 seq, u64 key length; then the key

// ---- Per-process state: test hooks, counters and live handles (all guarded by g_mu) ----

struct Hook {
  long calls = 0;
  int code = 0;  // injected return code
  int left = 0;  // calls still to fail
};

// What setup() recorded.
struct Config {
  std::string dir, hostname;
  uint64_t segment_size = 0, local_buffer_size = 0, capacity = 0;
  int64_t lease_ns = 0;
};

struct Store {
  std::mutex mu;  // guards everything below
  bool ready = false;
  Config cfg;
  std::map<uintptr_t, size_t> buffers;  // registered ranges: start -> size
};

std::mutex g_mu;
std::map<std::string, Hook> g_hooks;  // by name without the "mooncake_store_" prefix
std::map<void*, std::shared_ptr<Store>> g_stores;
long g_evictions = 0;
std::string g_last_dir;        // the directory of the latest successful setup
std::string g_last_preferred;  // preferred_segments[0] of the latest put_from naming one
std::atomic<uint64_t> g_tmp_counter{0};

std::string hook_name(const char* fn) {
  std::string s(fn);
  if (s.rfind("mooncake_store_", 0) == 0) s.erase(0, std::strlen("mooncake_store_"));
  return s;
}

// Counts a call of `fn`; true (with *code set) if an injected failure applies to it.
bool injected(const char* fn, int* code) {
  std::lock_guard lk(g_mu);
  Hook& h = g_hooks[fn];
  ++h.calls;
  if (h.left <= 0) return false;
  --h.left;
  *code = h.code;
  return true;
}

std::shared_ptr<Store> handle_store(mooncake_store_t h) {
  std::lock_guard lk(g_mu);
  auto it = g_stores.find(h);
  return it == g_stores.end() ? nullptr : it->second;
}

// Prologue of every store call: counts, injects, looks the handle up. Null result: return *rc.
std::shared_ptr<Store> find_store(const char* fn, mooncake_store_t h, int* rc) {
  if (injected(fn, rc)) return nullptr;
  *rc = kWrapperFail;  // NULL, unknown or destroyed handle
  return handle_store(h);
}

// A set-up store and a copy of its settings, so that file work runs without the store's mutex.
struct Ctx : Config {
  std::shared_ptr<Store> s;
};

// find_store() plus "must be set up" (-600). False: return *rc.
bool enter(const char* fn, mooncake_store_t h, Ctx* c, int* rc) {
  c->s = find_store(fn, h, rc);
  if (!c->s) return false;
  std::lock_guard lk(c->s->mu);
  if (!c->s->ready) return *rc = kInvalidParams, false;
  static_cast<Config&>(*c) = c->s->cfg;
  return true;
}

// Whether [p, p+n) lies inside one registered buffer.
bool registered(Store& s, const void* p, size_t n) {
  const auto a = reinterpret_cast<uintptr_t>(p);
  std::lock_guard lk(s.mu);
  auto it = s.buffers.upper_bound(a);
  if (it == s.buffers.begin()) return false;
  --it;
  return a - it->first <= it->second && n <= it->second - (a - it->first);
}

// ---- Files ----

struct Fd {
  int fd;
  explicit Fd(int f = -1) : fd(f) {}
  ~Fd() {
    if (fd >= 0) close(fd);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
};

// The cross-process lock. Each DirLock opens its own file description, so threads of one
// process exclude each other too (flock() is per open file description).
class DirLock {
 public:
  explicit DirLock(const std::string& dir)
      : fd_(open((dir + "/lock").c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644)) {
    while (fd_.fd >= 0 && flock(fd_.fd, LOCK_EX) != 0) {
      if (errno == EINTR) continue;
      close(fd_.fd);
      fd_.fd = -1;
    }
  }
  bool ok() const { return fd_.fd >= 0; }
  uint64_t next_seq() {
    uint64_t v = 0;
    if (pread(fd_.fd, &v, sizeof v, 0) != sizeof v) v = 0;
    ++v;
    return pwrite(fd_.fd, &v, sizeof v, 0) == sizeof v ? v : 0;
  }

 private:
  Fd fd_;
};

bool write_all(int fd, const void* p, size_t n, off_t off) {
  for (auto* b = static_cast<const char*>(p); n > 0;) {
    const ssize_t w = pwrite(fd, b, n, off);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return false;
    b += w, n -= static_cast<size_t>(w), off += w;
  }
  return true;
}

bool read_all(int fd, void* p, size_t n, off_t off) {
  for (auto* b = static_cast<char*>(p); n > 0;) {
    const ssize_t r = pread(fd, b, n, off);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return false;
    b += r, n -= static_cast<size_t>(r), off += r;
  }
  return true;
}

std::string obj_name(const std::string& key) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  if (key.size() > 100) {                 // keep file names under NAME_MAX
    uint64_t h = 1469598103934665603ull;  // FNV-1a; collisions are ignored
    for (unsigned char ch : key) h = (h ^ ch) * 1099511628211ull;
    out = "L";
    for (int i = 60; i >= 0; i -= 4) out += kHex[(h >> i) & 15];
    return out;
  }
  for (unsigned char ch : key) out += {kHex[ch >> 4], kHex[ch & 15]};
  return out;
}

struct ObjInfo {
  std::string name, key;
  uint32_t flags = 0;
  uint64_t seq = 0, size = 0;
  off_t data_off = 0;
};

// Reads an object file's header; nullopt if it is not one.
std::optional<ObjInfo> read_info(int fd) {
  struct stat st;
  char h[kHeader];
  if (fstat(fd, &st) != 0 || !read_all(fd, h, kHeader, 0) || std::memcmp(h, kMagic, 4) != 0) {
    return std::nullopt;
  }
  ObjInfo o;
  uint64_t klen;
  std::memcpy(&o.flags, h + 4, 4);
  std::memcpy(&o.seq, h + 8, 8);
  std::memcpy(&klen, h + 16, 8);
  if (klen > static_cast<uint64_t>(st.st_size) - kHeader) return std::nullopt;
  o.key.resize(klen);
  if (!read_all(fd, o.key.data(), klen, kHeader)) return std::nullopt;
  o.data_off = static_cast<off_t>(kHeader + klen);
  o.size = static_cast<uint64_t>(st.st_size - o.data_off);
  return o;
}

std::vector<std::string> list_dir(const std::string& path) {
  std::vector<std::string> names;
  if (DIR* d = opendir(path.c_str())) {
    while (const dirent* e = readdir(d)) {
      if (e->d_name[0] != '.') names.emplace_back(e->d_name);
    }
    closedir(d);
  }
  return names;
}

// All stored objects. Call under DirLock.
std::vector<ObjInfo> scan(const std::string& dir) {
  std::vector<ObjInfo> out;
  for (const std::string& name : list_dir(dir + "/obj")) {
    Fd fd(open((dir + "/obj/" + name).c_str(), O_RDONLY | O_CLOEXEC));
    if (auto o = fd.fd >= 0 ? read_info(fd.fd) : std::nullopt) {
      o->name = name;
      out.push_back(std::move(*o));
    }
  }
  return out;
}

int64_t now_ns() {
  timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return int64_t{ts.tv_sec} * 1000000000 + ts.tv_nsec;
}

bool lease_live(const std::string& dir, const std::string& name) {
  char buf[32] = {};
  Fd fd(open((dir + "/lease/" + name).c_str(), O_RDONLY | O_CLOEXEC));
  if (fd.fd < 0 || read(fd.fd, buf, sizeof buf - 1) <= 0) return false;
  return std::strtoll(buf, nullptr, 10) > now_ns();
}

void grant_lease(const Ctx& c, const std::string& name) {
  const std::string expiry = std::to_string(now_ns() + c.lease_ns);
  Fd fd(open((c.dir + "/lease/" + name).c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
  if (fd.fd >= 0) write_all(fd.fd, expiry.data(), expiry.size(), 0);
}

void remove_obj(const std::string& dir, const std::string& name) {
  unlink((dir + "/obj/" + name).c_str());
  unlink((dir + "/lease/" + name).c_str());
}

// used + size <= limit, without overflow.
bool fits(uint64_t used, uint64_t size, uint64_t limit) {
  return size <= limit && used <= limit - size;
}

// Emulates Mooncake's eviction before a put of `size` bytes: if usage would pass 90% of the
// capacity, evicts objects that are neither hard-pinned nor leased, oldest first, soft-pinned
// ones last, until usage after the put is <= 90%. True if the put then fits. Call under DirLock.
bool make_room(const Ctx& c, uint64_t size) {
  std::vector<ObjInfo> objs = scan(c.dir);
  uint64_t used = 0;
  for (const ObjInfo& o : objs) used += o.size;
  const uint64_t high = c.capacity / 10 * 9 + c.capacity % 10 * 9 / 10;
  if (!fits(used, size, high)) {
    std::vector<const ObjInfo*> victims;
    for (const ObjInfo& o : objs) {
      if (!(o.flags & kHardPin) && !lease_live(c.dir, o.name)) victims.push_back(&o);
    }
    std::sort(victims.begin(), victims.end(), [](const ObjInfo* a, const ObjInfo* b) {
      const bool sa = a->flags & kSoftPin, sb = b->flags & kSoftPin;
      return sa != sb ? sb : a->seq < b->seq;
    });
    for (const ObjInfo* v : victims) {
      if (fits(used, size, high)) break;
      remove_obj(c.dir, v->name);
      used -= v->size;
      std::lock_guard lk(g_mu);
      ++g_evictions;
    }
  }
  return fits(used, size, c.capacity);
}

// ---- Operations (arguments checked by the callers) ----

int do_put(const Ctx& c, const char* key, const void* data, size_t size,
           const mooncake_replicate_config_t* cfg) {
  uint32_t flags = 0;
  if (cfg && cfg->replica_num == 0) return kInvalidParams;
  if (cfg && cfg->with_hard_pin) flags |= kHardPin;
  if (cfg && cfg->with_soft_pin) flags |= kSoftPin;
  if (size == 0) return 0;  // nothing is stored
  // Write the object to tmp/ outside the lock; publish it under the lock.
  const std::string k(key),
      tmp = c.dir + "/tmp/" + std::to_string(getpid()) + "." + std::to_string(++g_tmp_counter);
  Fd fd(open(tmp.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644));
  char h[kHeader] = {};
  const uint64_t klen = k.size();
  std::memcpy(h, kMagic, 4);
  std::memcpy(h + 4, &flags, 4);
  std::memcpy(h + 16, &klen, 8);
  const bool written = fd.fd >= 0 && write_all(fd.fd, h, kHeader, 0) &&
                       write_all(fd.fd, k.data(), klen, kHeader) &&
                       write_all(fd.fd, data, size, static_cast<off_t>(kHeader + klen));
  const auto fail = [&](int rc) { return unlink(tmp.c_str()), rc; };
  if (!written) return fail(kTransferFail);
  DirLock lock(c.dir);
  if (!lock.ok()) return fail(kRpcFail);
  const std::string name = obj_name(k), path = c.dir + "/obj/" + name;
  if (access(path.c_str(), F_OK) == 0) return fail(0);  // first writer wins, no overwrite
  if (!make_room(c, size)) return fail(kNoHandle);
  const uint64_t seq = lock.next_seq();
  if (!write_all(fd.fd, &seq, 8, 8)) return fail(kTransferFail);
  unlink((c.dir + "/lease/" + name).c_str());  // a stale lease of an earlier object
  if (rename(tmp.c_str(), path.c_str()) != 0) return fail(kTransferFail);
  return 0;
}

int put_from(const Ctx& c, const char* key, void* buf, size_t size,
             const mooncake_replicate_config_t* cfg) {
  if (!key) return kWrapperFail;
  if (!*key) return kInvalidParams;
  if (size > 0 && !buf) return kWrapperFail;
  // Real RDMA fails on unregistered memory; the fake enforces registration the same way.
  if (size > 0 && !registered(*c.s, buf, size)) return kInvalidParams;
  return do_put(c, key, buf, size, cfg);
}

// Looks `key` up under the lock: its open file and header, renewing its lease if found
// and `accept(info)`; else the error code.
template <typename Accept>
int lookup(const Ctx& c, const char* key, Fd* fd, ObjInfo* info, Accept accept) {
  if (!key) return kWrapperFail;
  if (!*key) return kInvalidParams;
  DirLock lock(c.dir);
  if (!lock.ok()) return kRpcFail;
  const std::string name = obj_name(key);
  fd->fd = open((c.dir + "/obj/" + name).c_str(), O_RDONLY | O_CLOEXEC);
  if (fd->fd < 0) return kNotFound;
  auto o = read_info(fd->fd);
  if (!o) return kTransferFail;
  *info = std::move(*o);
  if (int rc = accept(*info); rc != 0) return rc;
  grant_lease(c, name);
  return 0;
}

int64_t get_into(const Ctx& c, const char* key, void* buf, size_t size) {
  if (!buf) return kWrapperFail;
  Fd fd;
  ObjInfo o;
  int rc = lookup(c, key, &fd, &o, [&](const ObjInfo& i) {
    return !registered(*c.s, buf, size) || size < i.size ? kInvalidParams : 0;
  });
  if (rc != 0) return rc;
  // The file stays readable through `fd` even if it is removed meanwhile.
  if (!read_all(fd.fd, buf, o.size, o.data_off)) return kTransferFail;
  return static_cast<int64_t>(o.size);
}

// Size of `key` (renewing its lease), or an error code.
int64_t get_size(const Ctx& c, const char* key) {
  Fd fd;
  ObjInfo o;
  const int rc = lookup(c, key, &fd, &o, [](const ObjInfo&) { return 0; });
  return rc != 0 ? rc : static_cast<int64_t>(o.size);
}

int is_exist(const Ctx& c, const char* key) {
  const int64_t rc = get_size(c, key);
  return rc >= 0 ? 1 : rc == kNotFound ? 0 : static_cast<int>(rc);
}

// Removes the objects whose key passes `match`, skipping leased ones unless `force`.
template <typename Match>
int64_t remove_matching(const Ctx& c, int force, Match match) {
  DirLock lock(c.dir);
  if (!lock.ok()) return kRpcFail;
  int64_t n = 0;
  for (const ObjInfo& o : scan(c.dir)) {
    if (match(o.key) && (force || !lease_live(c.dir, o.name))) remove_obj(c.dir, o.name), ++n;
  }
  return n;
}

bool mkdirs(const std::string& dir) {
  for (size_t i = 1; i <= dir.size(); ++i) {
    if (i == dir.size() || dir[i] == '/') mkdir(dir.substr(0, i).c_str(), 0755);
  }
  struct stat st;
  return stat(dir.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

// Reads an integer from the environment into *out; false if set but not an integer.
bool env_u64(const char* var, uint64_t* out) {
  const char* v = std::getenv(var);
  if (!v || !*v) return true;
  char* end = nullptr;
  errno = 0;
  const unsigned long long x = std::strtoull(v, &end, 10);
  if (errno != 0 || *end != '\0' || *v == '-') return false;
  *out = x;
  return true;
}

}  // namespace

// ---- The Mooncake Store C API ----

// Prologue of the calls that need a set-up store: defines `c`, or returns the error code.
#define ENTER(fn)                           \
  Ctx c;                                    \
  if (int rc; !enter(fn, store, &c, &rc)) { \
    return rc;                              \
  }

FAKE_API mooncake_store_t mooncake_store_create() {
  int code;
  if (injected("create", &code)) return nullptr;  // any injected code makes create fail
  auto s = std::make_shared<Store>();
  std::lock_guard lk(g_mu);
  g_stores.emplace(s.get(), s);
  return s.get();
}

FAKE_API void mooncake_store_destroy(mooncake_store_t store) {
  int code;
  injected("destroy", &code);  // counted; nothing to inject into a void function
  std::lock_guard lk(g_mu);
  g_stores.erase(store);
}

FAKE_API int mooncake_store_setup(mooncake_store_t store, const char* local_hostname,
                                  const char* metadata_server, uint64_t global_segment_size,
                                  uint64_t local_buffer_size, const char* protocol,
                                  const char* device_name, const char* master_server_addr) {
  (void)device_name;
  int rc;
  auto s = find_store("setup", store, &rc);
  if (!s) return rc;
  const std::string proto = protocol ? protocol : "tcp";
  uint64_t capacity = global_segment_size ? global_segment_size : uint64_t{1} << 30;
  uint64_t lease_ms = 10000;
  if (!local_hostname || !*local_hostname || !metadata_server || !*metadata_server ||
      (proto != "tcp" && proto != "rdma") ||
      !env_u64("OMNICONN_FAKE_MOONCAKE_CAPACITY", &capacity) ||
      !env_u64("OMNICONN_FAKE_MOONCAKE_LEASE_MS", &lease_ms) || lease_ms > (1ull << 40)) {
    return kInvalidParams;
  }
  (void)master_server_addr;
  if (std::strncmp(metadata_server, "fake:", 5) != 0) return kRpcFail;
  const std::string dir = metadata_server + 5;
  if (dir.empty() || !mkdirs(dir + "/obj") || !mkdirs(dir + "/tmp") || !mkdirs(dir + "/lease")) {
    return kRpcFail;
  }
  const Config cfg{dir,
                   local_hostname,
                   global_segment_size,
                   local_buffer_size,
                   capacity,
                   static_cast<int64_t>(lease_ms) * 1000000};
  {
    std::lock_guard lk(s->mu);
    if (s->ready) return kInvalidParams;  // already set up
    s->ready = true;
    s->cfg = cfg;
  }
  std::lock_guard lk(g_mu);
  g_last_dir = dir;
  return 0;
}

FAKE_API int mooncake_store_init_all(mooncake_store_t store, const char* protocol,
                                     const char* device_name, uint64_t mount_segment_size) {
  (void)protocol, (void)device_name, (void)mount_segment_size;
  int rc;
  return find_store("init_all", store, &rc) ? kInvalidParams : rc;  // not supported
}

FAKE_API int mooncake_store_health_check(mooncake_store_t store) {
  int rc;
  if (injected("health_check", &rc)) return rc;
  if (!store) return kWrapperFail;
  auto s = handle_store(store);
  if (!s) return 1;  // destroyed (or unknown)
  std::string dir;
  {
    std::lock_guard lk(s->mu);
    if (!s->ready) return 1;
    dir = s->cfg.dir;
  }
  struct stat st;
  return stat((dir + "/obj").c_str(), &st) == 0 ? 0 : 1;  // the store directory still exists
}

FAKE_API int mooncake_store_put(mooncake_store_t store, const char* key, const void* value,
                                size_t size, const mooncake_replicate_config_t* config) {
  ENTER("put");
  if (!key || (size > 0 && !value)) return kWrapperFail;
  if (!*key || size > c.local_buffer_size) return kInvalidParams;
  return do_put(c, key, value, size, config);
}

FAKE_API int mooncake_store_put_from(mooncake_store_t store, const char* key, void* buffer,
                                     size_t size, const mooncake_replicate_config_t* config) {
  ENTER("put_from");
  if (config && config->preferred_segments && config->preferred_segments_count > 0) {
    if (int rc; injected("put_from_preferred", &rc)) return rc;
    std::lock_guard lk(g_mu);
    const char* name = config->preferred_segments[0];
    g_last_preferred = name ? name : "";
  }
  return put_from(c, key, buffer, size, config);
}

FAKE_API int mooncake_store_batch_put_from(mooncake_store_t store, const char** keys,
                                           void** buffers, const size_t* sizes, size_t count,
                                           const mooncake_replicate_config_t* config,
                                           int* results_out) {
  ENTER("batch_put_from");
  if (count > 0 && (!keys || !buffers || !sizes || !results_out)) return kWrapperFail;
  for (size_t i = 0; i < count; ++i) {
    results_out[i] = put_from(c, keys[i], buffers[i], sizes[i], config);
  }
  return 0;
}

FAKE_API int64_t mooncake_store_get_into(mooncake_store_t store, const char* key, void* buffer,
                                         size_t size) {
  ENTER("get_into");
  return get_into(c, key, buffer, size);
}

FAKE_API int mooncake_store_batch_get_into(mooncake_store_t store, const char** keys,
                                           void** buffers, const size_t* sizes, size_t count,
                                           int64_t* results_out) {
  ENTER("batch_get_into");
  if (count > 0 && (!keys || !buffers || !sizes || !results_out)) return kWrapperFail;
  for (size_t i = 0; i < count; ++i) results_out[i] = get_into(c, keys[i], buffers[i], sizes[i]);
  return 0;
}

FAKE_API int mooncake_store_is_exist(mooncake_store_t store, const char* key) {
  ENTER("is_exist");
  return is_exist(c, key);
}

FAKE_API int mooncake_store_batch_is_exist(mooncake_store_t store, const char** keys, size_t count,
                                           int* results_out) {
  ENTER("batch_is_exist");
  if (count > 0 && (!keys || !results_out)) return kWrapperFail;
  for (size_t i = 0; i < count; ++i) results_out[i] = is_exist(c, keys[i]);
  return 0;
}

FAKE_API int64_t mooncake_store_get_size(mooncake_store_t store, const char* key) {
  ENTER("get_size");
  return get_size(c, key);
}

FAKE_API int mooncake_store_get_hostname(mooncake_store_t store, char* buf_out, size_t buf_len) {
  ENTER("get_hostname");
  if (!buf_out || buf_len <= c.hostname.size()) return kWrapperFail;
  std::memcpy(buf_out, c.hostname.c_str(), c.hostname.size() + 1);
  return 0;
}

FAKE_API int mooncake_store_remove(mooncake_store_t store, const char* key, int force) {
  ENTER("remove");
  if (!key) return kWrapperFail;
  if (!*key) return kInvalidParams;
  DirLock lock(c.dir);
  if (!lock.ok()) return kRpcFail;
  const std::string name = obj_name(key);
  if (access((c.dir + "/obj/" + name).c_str(), F_OK) != 0) return kNotFound;
  if (!force && lease_live(c.dir, name)) return kHasLease;
  remove_obj(c.dir, name);
  return 0;
}

FAKE_API int64_t mooncake_store_remove_by_regex(mooncake_store_t store, const char* pattern,
                                                int force) {
  ENTER("remove_by_regex");
  if (!pattern) return kWrapperFail;
  try {  // like Mooncake's master: std::regex_search, ECMAScript grammar
    const std::regex re(pattern);
    return remove_matching(c, force,
                           [&](const std::string& k) { return std::regex_search(k, re); });
  } catch (const std::exception&) {  // a bad pattern (or a regex too complex to run)
    return kInvalidParams;
  }
}

FAKE_API int64_t mooncake_store_remove_all(mooncake_store_t store, int force) {
  ENTER("remove_all");
  return remove_matching(c, force, [](const std::string&) { return true; });
}

FAKE_API int mooncake_store_register_buffer(mooncake_store_t store, void* buffer, size_t size) {
  ENTER("register_buffer");
  if (!buffer || size == 0) return kWrapperFail;
  std::lock_guard lk(c.s->mu);
  return c.s->buffers.emplace(reinterpret_cast<uintptr_t>(buffer), size).second ? 0
                                                                                : kInvalidParams;
}

FAKE_API int mooncake_store_unregister_buffer(mooncake_store_t store, void* buffer) {
  ENTER("unregister_buffer");
  if (!buffer) return kWrapperFail;
  std::lock_guard lk(c.s->mu);
  return c.s->buffers.erase(reinterpret_cast<uintptr_t>(buffer)) ? 0 : kInvalidParams;
}

// ---- Test hooks ----

// The next `count` calls of `function` ("put_from" or "mooncake_store_put_from") in this
// process return `code` without doing anything. count <= 0 clears the injection.
FAKE_API int omniconn_fake_mooncake_inject(const char* function, int code, int count) {
  if (!function) return kWrapperFail;
  std::lock_guard lk(g_mu);
  Hook& h = g_hooks[hook_name(function)];
  h.code = code;
  h.left = std::max(count, 0);
  return 0;
}

// Calls of `function` in this process since load (a forked child inherits the parent's counts).
FAKE_API long omniconn_fake_mooncake_calls(const char* function) {
  if (!function) return -1;
  std::lock_guard lk(g_mu);
  auto it = g_hooks.find(hook_name(function));
  return it == g_hooks.end() ? 0 : it->second.calls;
}

// Copies the preferred segment of the latest put_from that named one ("" if none did).
FAKE_API int omniconn_fake_mooncake_last_preferred(char* buf, size_t len) {
  std::lock_guard lk(g_mu);
  if (!buf || len <= g_last_preferred.size()) return kWrapperFail;
  std::memcpy(buf, g_last_preferred.c_str(), g_last_preferred.size() + 1);
  return 0;
}

FAKE_API long omniconn_fake_mooncake_evictions(void) {
  std::lock_guard lk(g_mu);
  return g_evictions;
}

// Objects now in the store of this process's latest setup; -1 before any setup.
FAKE_API long omniconn_fake_mooncake_objects(void) {
  std::string dir;
  {
    std::lock_guard lk(g_mu);
    dir = g_last_dir;
  }
  return dir.empty() ? -1 : static_cast<long>(list_dir(dir + "/obj").size());
}
