#include "shm/shm_key_index.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>

namespace omniconn::shm {

namespace {

constexpr char kMagic[8] = {'O', 'C', 'K', 'I', 'D', 'X', '1', '\0'};
constexpr size_t kHeader = 16;                      // magic, producer id
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
  e.descriptor = bytes.substr(kHeader);
  return std::optional<IndexEntry>(std::move(e));
}

}  // namespace

std::string KeyIndex::directory() {
  return "/dev/shm/omniconn-" + std::to_string(::geteuid());
}

std::string KeyIndex::entry_name(const PayloadKey& key) const {
  std::string id;
  for (std::string_view part : {std::string_view(name_space_), std::string_view(key.from_stage),
                                std::string_view(key.to_stage), std::string_view(key.request_id)}) {
    id += std::to_string(part.size()) + ":" + std::string(part);
  }
  XXH128_hash_t h = XXH3_128bits(id.data(), id.size());
  return "k" + hex(h.high64) + hex(h.low64);
}

// Created 0700 on first use; refused unless it is a directory of this user that nobody else
// can enter (another user cannot plant or read entries).
Result<int> KeyIndex::dir() {
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
  return dir_.get();
}

Status KeyIndex::write_entry(int dfd, const std::string& name, uint64_t producer_id,
                             std::string_view descriptor, bool replace) {
  std::string tmp = unique_name('t');
  Fd fd(::openat(dfd, tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600));
  if (!fd.valid()) {
    return Status::ResourceExhausted("creating a key index entry: " + errno_text(errno));
  }
  char header[kHeader];
  std::memcpy(header, kMagic, sizeof kMagic);
  std::memcpy(header + 8, &producer_id, sizeof producer_id);
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
  std::string name = entry_name(key);
  OMNICONN_RETURN_IF_ERROR(write_entry(dfd, name, producer_id, descriptor, /*replace=*/true));
  // Forget up to two entries that readers have taken: the list follows what is unread.
  for (int i = 0; i < 2 && !mine_.empty(); ++i) {
    if (::faccessat(dfd, mine_.front().name.c_str(), F_OK, AT_SYMLINK_NOFOLLOW) == 0) break;
    mine_.pop_front();
  }
  mine_.push_back(Mine{std::move(name), key.request_id, producer_id});
  return Status::Ok();
}

Result<std::optional<IndexEntry>> KeyIndex::claim(const PayloadKey& key) {
  int dfd;
  {
    std::lock_guard lock(mu_);
    OMNICONN_ASSIGN_OR_RETURN(dfd, dir());
  }
  std::string claimed = unique_name('c');
  if (::renameat(dfd, entry_name(key).c_str(), dfd, claimed.c_str()) != 0) {
    if (errno == ENOENT) return std::optional<IndexEntry>();
    return Status::Unavailable("claiming a key index entry: " + errno_text(errno));
  }
  auto e = read_entry(dfd, claimed);
  ::unlinkat(dfd, claimed.c_str(), 0);
  return e;
}

void KeyIndex::restore(const PayloadKey& key, const IndexEntry& entry) {
  std::lock_guard lock(mu_);
  auto dfd = dir();
  if (dfd.ok()) {
    (void)write_entry(*dfd, entry_name(key), entry.producer_id, entry.descriptor, false);
  }
}

void KeyIndex::remove_if(const PayloadKey& key, std::string_view descriptor) {
  int dfd;
  {
    std::lock_guard lock(mu_);
    auto d = dir();
    if (!d.ok()) return;
    dfd = *d;
  }
  std::string name = entry_name(key);
  auto e = read_entry(dfd, name);
  if (e.ok() && e->has_value() && (*e)->descriptor == descriptor) ::unlinkat(dfd, name.c_str(), 0);
}

// Only while the entry is still this writer's: another writer may have replaced it.
void KeyIndex::remove_mine(const Mine& m) {
  auto e = read_entry(dir_.get(), m.name);
  if (e.ok() && e->has_value() && (*e)->producer_id == m.producer_id) {
    ::unlinkat(dir_.get(), m.name.c_str(), 0);
  }
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

KeyIndex::~KeyIndex() {
  remove_all();
}

}  // namespace omniconn::shm
