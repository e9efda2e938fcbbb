#include "shm/shm_key_index.h"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#define XXH_STATIC_LINKING_ONLY  // XXH3_state_t on the stack
#include <xxhash.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>

namespace omniconn::shm {

namespace {

constexpr char kMagic[8] = {'O', 'C', 'K', 'I', 'D', 'X', '2', '\0'};
constexpr size_t kHeader = 24;                      // magic, producer id, writer pid
constexpr size_t kMaxEntryBytes = size_t{1} << 31;  // an inline payload can be large

std::string hex(uint64_t v) {
  std::string s(16, '0');
  for (int i = 15; i >= 0; --i, v >>= 4) s[static_cast<size_t>(i)] = "0123456789abcdef"[v & 15];
  return s;
}

// A name no other writer, claim or process uses: pid + a counter + randomness.
std::string unique_name(char kind) {
  static std::atomic<uint64_t> n{0};
  return std::string(".") + kind + hex(random_u64()) + hex(static_cast<uint64_t>(::getpid())) +
         hex(n.fetch_add(1, std::memory_order_relaxed));
}

Status write_all(int fd, const void* p, size_t n) {
  const char* c = static_cast<const char*>(p);
  while (n > 0) {
    ssize_t w = ::write(fd, c, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return Status::ResourceExhausted("writing a key index entry: " + errno_text(errno));
    c += w;
    n -= static_cast<size_t>(w);
  }
  return Status::Ok();
}

// The entry in file `name` (nullopt: no such file; Corrupt: not an entry).
Result<std::optional<IndexEntry>> read_entry(int dfd, const std::string& name) {
  Fd fd(::openat(dfd, name.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC));
  if (!fd.valid()) {
    if (errno == ENOENT) return std::optional<IndexEntry>();
    return Status::Unavailable("key index entry " + name + ": " + errno_text(errno));
  }
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0 || !S_ISREG(st.st_mode) || st.st_uid != ::geteuid() ||
      static_cast<uint64_t>(st.st_size) < kHeader ||
      static_cast<uint64_t>(st.st_size) > kMaxEntryBytes) {
    return Status::Corrupt("key index entry " + name + " is not an entry of this user");
  }
  std::string bytes(static_cast<size_t>(st.st_size), '\0');
  if (::pread(fd.get(), bytes.data(), bytes.size(), 0) != st.st_size ||
      std::memcmp(bytes.data(), kMagic, sizeof kMagic) != 0) {
    return Status::Corrupt("key index entry " + name + " is torn or not an entry");
  }
  IndexEntry e;
  std::memcpy(&e.producer_id, bytes.data() + 8, sizeof e.producer_id);
  std::memcpy(&e.pid, bytes.data() + 16, sizeof e.pid);
  e.descriptor = bytes.substr(kHeader);
  return std::optional<IndexEntry>(std::move(e));
}

// Removes entry `name` if `doomed` holds for it. It is moved aside first and judged again
// there, so that an entry renamed into its place meanwhile (a newer put) is never the one
// removed; one that is not doomed is put back unless a newer one took its place.
template <typename Doomed>
bool remove_entry_if(int dfd, const std::string& name, Doomed doomed) {
  auto e = read_entry(dfd, name);
  if (!e.ok() || !e->has_value() || !doomed(**e)) return false;
  std::string aside = unique_name('c');
  if (::renameat(dfd, name.c_str(), dfd, aside.c_str()) != 0) return false;
  e = read_entry(dfd, aside);
  bool removed = !(e.ok() && e->has_value() && !doomed(**e));
  if (!removed) ::linkat(dfd, aside.c_str(), dfd, name.c_str(), 0);  // EEXIST: a newer one stays
  ::unlinkat(dfd, aside.c_str(), 0);
  return removed;
}

bool older_than(const struct stat& st, std::chrono::milliseconds age) {
  timespec now{};
  ::clock_gettime(CLOCK_REALTIME, &now);
  auto ns = [](const timespec& t) { return int64_t{t.tv_sec} * 1'000'000'000 + t.tv_nsec; };
  return ns(now) - ns(st.st_mtim) >= std::chrono::nanoseconds(age).count();
}

// True when no process `pid` exists (a pid that exists, reused or not, keeps its entries).
bool process_gone(int64_t pid) {
  if (pid <= 0 || pid > INT32_MAX) return true;
  return ::kill(static_cast<pid_t>(pid), 0) != 0 && errno == ESRCH;
}

// Both: a writer in another network namespace (a container sharing /dev/shm) cannot be heard,
// but its process can be seen.
bool writer_gone(uint64_t producer_id, int64_t pid) {
  return nobody_listens(producer_socket_name(producer_id)) && process_gone(pid);
}

// A temporary or claimed file (".t"/".c" + random + pid + counter, in hex) whose process is
// gone. A pid that exists, reused or not, keeps its file.
bool leftover_of_dead_process(const std::string& name) {
  if (name.size() != 50 || name[0] != '.' || (name[1] != 't' && name[1] != 'c')) return false;
  uint64_t pid = 0;
  for (char c : name.substr(18, 16)) {
    int v = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
    if (v < 0) return false;
    pid = pid << 4 | static_cast<uint64_t>(v);
  }
  if (pid == 0 || pid > INT32_MAX) return false;
  return process_gone(static_cast<int64_t>(pid));
}

}  // namespace

std::string KeyIndex::directory() {
  return "/dev/shm/omniconn-" + std::to_string(::geteuid());
}

// xxh3-128 of "<len>:<part>" for namespace, from, to, request id, streamed: no string is built.
KeyHash KeyIndex::hash(const PayloadKey& key) const {
  XXH3_state_t state;
  XXH3_128bits_reset(&state);
  for (std::string_view part : {std::string_view(name_space_), std::string_view(key.from_stage),
                                std::string_view(key.to_stage), std::string_view(key.request_id)}) {
    char len[24];
    const int n = std::snprintf(len, sizeof len, "%zu:", part.size());
    XXH3_128bits_update(&state, len, static_cast<size_t>(n));
    XXH3_128bits_update(&state, part.data(), part.size());
  }
  const XXH128_hash_t h = XXH3_128bits_digest(&state);
  return KeyHash{h.high64, h.low64};
}

std::string KeyIndex::entry_name(const PayloadKey& key) const {
  const KeyHash h = hash(key);
  return "k" + hex(h.hi) + hex(h.lo);
}

// Opened (and swept) on first use.
Result<int> KeyIndex::dir() {
  if (dir_.valid()) return dir_.get();
  OMNICONN_ASSIGN_OR_RETURN(int dfd, open_dir());
  sweep_locked(dfd);
  return dfd;
}

// Created 0700 on first use; refused unless it is a directory of this user that nobody else
// can enter (another user cannot plant or read entries).
Result<int> KeyIndex::open_dir() {
  if (dir_.valid()) return dir_.get();
  std::string path = directory();
  if (::mkdir(path.c_str(), 0700) != 0 && errno != EEXIST) {
    return Status::Unavailable("cannot create the key index " + path + ": " + errno_text(errno));
  }
  Fd fd(::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (!fd.valid()) {
    return Status::Unavailable("cannot open the key index " + path + ": " + errno_text(errno));
  }
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0 || st.st_uid != ::geteuid() || (st.st_mode & 077) != 0) {
    return Status::Unavailable("the key index " + path +
                               " belongs to another user or is open to others: refused");
  }
  dir_ = std::move(fd);
  // The table too, where it can be mapped (else entries go to files, as before it existed).
  auto table = KeyTable::open(dir_.get());
  if (table.ok()) table_ = std::move(*table);
  return dir_.get();
}

Status KeyIndex::write_entry(int dfd, const std::string& name, uint64_t producer_id, int64_t pid,
                             std::string_view descriptor, bool replace) {
  std::string tmp = unique_name('t');
  Fd fd(::openat(dfd, tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600));
  if (!fd.valid()) {
    return Status::ResourceExhausted("creating a key index entry: " + errno_text(errno));
  }
  char header[kHeader];
  std::memcpy(header, kMagic, sizeof kMagic);
  std::memcpy(header + 8, &producer_id, sizeof producer_id);
  std::memcpy(header + 16, &pid, sizeof pid);
  Status st = write_all(fd.get(), header, sizeof header);
  if (st.ok()) st = write_all(fd.get(), descriptor.data(), descriptor.size());
  fd.reset();
  if (st.ok()) {
    int rc = replace ? ::renameat(dfd, tmp.c_str(), dfd, name.c_str())
                     : ::linkat(dfd, tmp.c_str(), dfd, name.c_str(), 0);
    if (rc != 0 && !(errno == EEXIST && !replace)) {
      st = Status::ResourceExhausted("publishing a key index entry: " + errno_text(errno));
    }
  }
  if (!replace || !st.ok()) ::unlinkat(dfd, tmp.c_str(), 0);
  return st;
}

Status KeyIndex::publish(const PayloadKey& key, uint64_t producer_id, std::string_view descriptor) {
  std::lock_guard lock(mu_);
  OMNICONN_ASSIGN_OR_RETURN(int dfd, dir());
  if (std::chrono::steady_clock::now() - last_sweep_ >= policy_.interval) sweep_locked(dfd);
  Mine mine{"", std::nullopt, key.request_id, producer_id};
  const EntryRef e{producer_id, ::getpid(), descriptor};
  const KeyHash h = hash(key);
  if (table_) mine.ticket = table_->publish(h, e);
  if (!mine.ticket) {
    if (table_) table_->remove_key(h);  // the newest entry of a key is the one found
    mine.name = entry_name(key);
    OMNICONN_RETURN_IF_ERROR(
        write_entry(dfd, mine.name, producer_id, e.pid, descriptor, /*replace=*/true));
  }
  // Forget up to two entries that readers have taken: the list follows what is unread.
  for (int i = 0; i < 2 && !mine_.empty() && taken(dfd, mine_.front()); ++i) mine_.pop_front();
  mine_.push_back(std::move(mine));
  return Status::Ok();
}

bool KeyIndex::taken(int dfd, const Mine& m) const {
  if (m.ticket) return !table_->live(*m.ticket);
  return ::faccessat(dfd, m.name.c_str(), F_OK, AT_SYMLINK_NOFOLLOW) != 0;
}

bool KeyIndex::holds(const PayloadKey& key) {
  std::lock_guard lock(mu_);
  auto dfd = open_dir();  // no sweep: looking changes nothing
  if (!dfd.ok()) return false;
  if (table_ && table_->holds(hash(key))) return true;
  return ::faccessat(*dfd, entry_name(key).c_str(), F_OK, AT_SYMLINK_NOFOLLOW) == 0;
}

Result<std::optional<IndexEntry>> KeyIndex::claim(const PayloadKey& key) {
  int dfd;
  {
    std::lock_guard lock(mu_);
    OMNICONN_ASSIGN_OR_RETURN(dfd, dir());
  }
  if (table_) {
    if (auto e = table_->claim(hash(key))) return std::optional<IndexEntry>(std::move(*e));
  }
  std::string name = entry_name(key), claimed = unique_name('c');
  if (::renameat(dfd, name.c_str(), dfd, claimed.c_str()) != 0) {
    if (errno == ENOENT) return std::optional<IndexEntry>();
    return Status::Unavailable("claiming a key index entry: " + errno_text(errno));
  }
  auto e = read_entry(dfd, claimed);
  // Unreadable for now (out of fds): back in place, unless a newer entry took it.
  if (!e.ok() && e.status().code() != StatusCode::kCorrupt) {
    ::linkat(dfd, claimed.c_str(), dfd, name.c_str(), 0);
  }
  ::unlinkat(dfd, claimed.c_str(), 0);
  return e;
}

void KeyIndex::restore(const PayloadKey& key, const IndexEntry& entry) {
  std::lock_guard lock(mu_);
  auto dfd = dir();
  if (!dfd.ok()) return;
  const KeyHash h = hash(key);
  if (table_ && table_->holds(h)) return;  // a newer entry took its place
  if (table_ && table_->publish(h, EntryRef{entry.producer_id, entry.pid, entry.descriptor})) {
    return;
  }
  (void)write_entry(*dfd, entry_name(key), entry.producer_id, entry.pid, entry.descriptor, false);
}

void KeyIndex::remove_if(const PayloadKey& key, std::string_view descriptor) {
  int dfd;
  {
    std::lock_guard lock(mu_);
    auto d = dir();
    if (!d.ok()) return;
    dfd = *d;
  }
  if (table_ && table_->remove_if(hash(key), descriptor)) return;
  remove_entry_if(dfd, entry_name(key),
                  [&](const IndexEntry& e) { return e.descriptor == descriptor; });
}

// Only while the entry is still this writer's: another writer may have replaced it.
void KeyIndex::remove_mine(const Mine& m) {
  if (m.ticket) {
    table_->remove(*m.ticket);
    return;
  }
  remove_entry_if(dir_.get(), m.name,
                  [&](const IndexEntry& e) { return e.producer_id == m.producer_id; });
}

void KeyIndex::remove_request(std::string_view request_id) {
  std::lock_guard lock(mu_);
  if (!dir_.valid()) return;
  std::erase_if(mine_, [&](const Mine& m) {
    if (m.request_id != request_id) return false;
    remove_mine(m);
    return true;
  });
}

void KeyIndex::remove_all() {
  std::lock_guard lock(mu_);
  if (!dir_.valid()) return;
  for (const Mine& m : mine_) remove_mine(m);
  mine_.clear();
}

Result<size_t> KeyIndex::sweep() {
  std::lock_guard lock(mu_);
  OMNICONN_ASSIGN_OR_RETURN(int dfd, open_dir());
  return sweep_locked(dfd);
}

size_t KeyIndex::sweep_locked(int dfd) {
  last_sweep_ = std::chrono::steady_clock::now();
  std::map<uint64_t, bool> gone;  // by writer id: each is asked once per sweep
  size_t removed = 0;
  for (const std::string& name : next_names(dfd)) removed += sweep_one(dfd, name, &gone);
  if (table_) {
    removed += table_->sweep(policy_.min_age, [&](uint64_t writer, int64_t pid) {
      auto [it, fresh] = gone.try_emplace(writer, false);
      if (fresh) it->second = writer_gone(writer, pid);
      return it->second;
    });
  }
  return removed;
}

// The next `batch` names of the directory, from where the last sweep stopped.
std::vector<std::string> KeyIndex::next_names(int dfd) {
  std::vector<std::string> names;
  Fd fd(::openat(dfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  DIR* d = fd.valid() ? ::fdopendir(fd.get()) : nullptr;
  if (d == nullptr) return names;
  fd.release();  // the DIR owns it now
  if (cursor_ != 0) ::seekdir(d, cursor_);
  const dirent* e = nullptr;
  while (names.size() < policy_.batch && (e = ::readdir(d)) != nullptr) {
    std::string_view n = e->d_name;
    if (n != "." && n != "..") names.emplace_back(n);
  }
  cursor_ = e == nullptr ? 0 : ::telldir(d);
  ::closedir(d);
  return names;
}

// An old entry whose writer does not listen any more, or an old leftover of a dead process.
// An entry of a live writer is never removed, nor one that a newer put replaced meanwhile.
bool KeyIndex::sweep_one(int dfd, const std::string& name, std::map<uint64_t, bool>* gone) {
  struct stat st {};
  if (::fstatat(dfd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISREG(st.st_mode) ||
      st.st_uid != ::geteuid() || !older_than(st, policy_.min_age)) {
    return false;
  }
  if (name[0] != 'k')
    return leftover_of_dead_process(name) && ::unlinkat(dfd, name.c_str(), 0) == 0;
  auto e = read_entry(dfd, name);
  if (!e.ok() || !e->has_value()) return false;
  uint64_t writer = (*e)->producer_id;
  auto [it, fresh] = gone->try_emplace(writer, false);
  if (fresh) it->second = writer_gone(writer, (*e)->pid);
  if (!it->second) return false;
  return remove_entry_if(dfd, name, [&](const IndexEntry& x) { return x.producer_id == writer; });
}

KeyIndex::~KeyIndex() {
  remove_all();
}

}  // namespace omniconn::shm
