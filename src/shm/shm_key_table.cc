#include "shm/shm_key_table.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include <cstddef>
#include <cstring>

namespace omniconn::shm {

namespace {

// Every process of the user maps this file: any change of its layout must come with a new
// name and magic (keys-v2, ...), or two versions would misread each other's slots.
constexpr char kFileName[] = "keys-v2";
constexpr uint64_t kMagic = 0x3276'7965'6b63'6f00;  // "\0ockeyv2"
constexpr size_t kFileHeader = 4096;
// [header][576 slot heads of 64 bytes: a window's 16 are 1 KiB in one page]
// [512 small bodies of 8 KiB][64 large bodies of 72 KiB]
constexpr size_t kHeadBytes = 64;
constexpr size_t kAllSlots = KeyTable::kSlots + KeyTable::kLargeSlots;
constexpr size_t kBodies = kFileHeader + kAllSlots * kHeadBytes;
constexpr size_t kLargeBodies = kBodies + KeyTable::kSlots * KeyTable::kCapacity;
constexpr size_t kFileBytes = kLargeBodies + KeyTable::kLargeSlots * KeyTable::kLargeCapacity;

constexpr uint64_t kEmpty = 0, kBusy = 1, kReady = 2;
uint64_t phase(uint64_t state) {
  return state & 3;
}
uint64_t next(uint64_t state, uint64_t ph) {
  return ((state >> 2) + 1) << 2 | ph;
}

int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

uint64_t digest(std::string_view d) {
  return XXH3_64bits(d.data(), d.size());
}

}  // namespace

// A slot: its head (what probing reads) and, apart, its body: the descriptor in 8-byte words,
// the last one zero-padded.
struct KeyTable::Slot {
  std::atomic<uint64_t> state;
  std::atomic<uint64_t> hash_hi, hash_lo, producer_id, desc_hash;
  std::atomic<int64_t> pid, published_ns;
  std::atomic<uint64_t> desc_len;
};

Result<std::unique_ptr<KeyTable>> KeyTable::open(int dfd) {
  Fd fd(::openat(dfd, kFileName, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600));
  if (!fd.valid()) return Status::Unavailable("key table: " + errno_text(errno));
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0 || !S_ISREG(st.st_mode) || st.st_uid != ::geteuid() ||
      (st.st_mode & 077) != 0) {
    return Status::Unavailable("key table: not a private file of this user: refused");
  }
  // Its pages are reserved, not only sized: a write to a page tmpfs cannot supply would be a
  // SIGBUS, where a full /dev/shm (a container's 64 MiB) must only mean the entry files.
  // Every opener reserves it (pages already there cost nothing): harmless when two do.
  if (int rc = ::posix_fallocate(fd.get(), 0, static_cast<off_t>(kFileBytes)); rc != 0) {
    return Status::ResourceExhausted("key table: reserving " + std::to_string(kFileBytes) +
                                     " bytes in /dev/shm: " + errno_text(rc));
  }
  void* p = ::mmap(nullptr, kFileBytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd.get(), 0);
  if (p == MAP_FAILED) return Status::ResourceExhausted("key table: mmap: " + errno_text(errno));
  Mapping m(p, kFileBytes);
  auto* magic = reinterpret_cast<std::atomic<uint64_t>*>(m.data());
  uint64_t seen = 0;
  if (!magic->compare_exchange_strong(seen, kMagic) && seen != kMagic) {
    return Status::Corrupt("key table " + std::string(kFileName) + ": not a key table");
  }
  return std::unique_ptr<KeyTable>(new KeyTable(std::move(m)));
}

KeyTable::Slot& KeyTable::slot(size_t i) const {
  static_assert(sizeof(Slot) == kHeadBytes);
  return *reinterpret_cast<Slot*>(map_.data() + kFileHeader + i * kHeadBytes);
}

size_t KeyTable::index_of(const Slot& s) const {
  return static_cast<size_t>(reinterpret_cast<const std::byte*>(&s) - map_.data() - kFileHeader) /
         kHeadBytes;
}

// The slot's descriptor words: a small body for the first kSlots slots, a large one after.
std::atomic<uint64_t>* KeyTable::words(const Slot& s) const {
  const size_t i = index_of(s);
  std::byte* p = i < kSlots ? map_.data() + kBodies + i * kCapacity
                            : map_.data() + kLargeBodies + (i - kSlots) * kLargeCapacity;
  return reinterpret_cast<std::atomic<uint64_t>*>(p);
}

size_t KeyTable::capacity(const Slot& s) const {
  return index_of(s) < kSlots ? kCapacity : kLargeCapacity;
}

// fn(index, slot, state) for each slot of h's window among the small (large == false) or the
// large slots, until fn returns true.
template <typename Fn>
bool KeyTable::each_in_window(const KeyHash& h, bool large, Fn&& fn) const {
  const size_t base = large ? kSlots : 0, n = large ? kLargeSlots : kSlots;
  for (size_t k = 0; k < kWindow; ++k) {
    const size_t i = base + (h.lo + k) % n;
    Slot& s = slot(i);
    if (fn(i, s, s.state.load(std::memory_order_acquire))) return true;
  }
  return false;
}

// The same over both windows, small first.
template <typename Fn>
bool KeyTable::each_in_windows(const KeyHash& h, Fn&& fn) const {
  return each_in_window(h, false, fn) || each_in_window(h, true, fn);
}

bool KeyTable::matches(const Slot& s, uint64_t state, const KeyHash& h) const {
  return phase(state) == kReady && s.hash_lo.load(std::memory_order_relaxed) == h.lo &&
         s.hash_hi.load(std::memory_order_relaxed) == h.hi;
}

void KeyTable::fill(Slot& s, const KeyHash& h, const EntryRef& e) {
  const std::string_view d = e.descriptor;
  std::atomic<uint64_t>* w = words(s);
  s.hash_hi.store(h.hi, std::memory_order_relaxed);
  s.hash_lo.store(h.lo, std::memory_order_relaxed);
  s.producer_id.store(e.producer_id, std::memory_order_relaxed);
  s.pid.store(e.pid, std::memory_order_relaxed);
  s.published_ns.store(now_ns(), std::memory_order_relaxed);
  s.desc_hash.store(digest(d), std::memory_order_relaxed);
  s.desc_len.store(d.size(), std::memory_order_relaxed);
  for (size_t off = 0; off < d.size(); off += 8) {
    uint64_t v = 0;
    std::memcpy(&v, d.data() + off, std::min<size_t>(8, d.size() - off));
    w[off / 8].store(v, std::memory_order_relaxed);
  }
}

// A slot of h's window (of the class the descriptor needs) made busy for this writer: the
// key's own entry (replaced), else a free one.
std::optional<KeyTable::Ticket> KeyTable::take_slot(const KeyHash& h, bool large) {
  std::optional<Ticket> got;
  auto take = [&](size_t i, Slot& s, uint64_t st) {
    const uint64_t busy = next(st, kBusy);
    if (!s.state.compare_exchange_strong(st, busy, std::memory_order_acquire)) return false;
    got = Ticket{static_cast<uint32_t>(i), busy};
    return true;
  };
  each_in_window(h, large, [&](size_t i, Slot& s, uint64_t st) {
    return matches(s, st, h) && take(i, s, st);
  });
  if (!got) {
    each_in_window(h, large, [&](size_t i, Slot& s, uint64_t st) {
      return phase(st) == kEmpty && take(i, s, st);
    });
  }
  return got;
}

std::optional<KeyTable::Ticket> KeyTable::publish(const KeyHash& h, const EntryRef& e) {
  if (e.descriptor.size() > kLargeCapacity) return std::nullopt;
  const bool large = e.descriptor.size() > kCapacity;
  remove_key_in(h, !large);  // an entry of the key in the other class: this one replaces it
  std::optional<Ticket> t = take_slot(h, large);
  if (!t) return std::nullopt;
  Slot& s = slot(t->slot);
  fill(s, h, e);
  const uint64_t ready = (t->state & ~uint64_t{3}) | kReady;
  // A sweep may have freed a slot left busy too long: then the entry goes to the files.
  if (!s.state.compare_exchange_strong(t->state, ready, std::memory_order_release)) {
    return std::nullopt;
  }
  return Ticket{t->slot, ready};
}

std::optional<IndexEntry> KeyTable::claim(const KeyHash& h) {
  std::optional<IndexEntry> out;
  each_in_windows(h, [&](size_t, Slot& s, uint64_t st) {
    if (!matches(s, st, h)) return false;
    const uint64_t n = s.desc_len.load(std::memory_order_relaxed);
    if (n > capacity(s)) return false;  // torn: the CAS below would fail anyway
    const std::atomic<uint64_t>* w = words(s);
    IndexEntry e{s.producer_id.load(std::memory_order_relaxed),
                 s.pid.load(std::memory_order_relaxed), std::string(n, '\0')};
    for (size_t off = 0; off < n; off += 8) {
      const uint64_t v = w[off / 8].load(std::memory_order_relaxed);
      std::memcpy(e.descriptor.data() + off, &v, std::min<size_t>(8, n - off));
    }
    if (!s.state.compare_exchange_strong(st, next(st, kEmpty), std::memory_order_acq_rel)) {
      return false;  // changed while copied: look on
    }
    out = std::move(e);
    return true;
  });
  return out;
}

bool KeyTable::holds(const KeyHash& h) const {
  return each_in_windows(h, [&](size_t, Slot& s, uint64_t st) { return matches(s, st, h); });
}

bool KeyTable::remove_if(const KeyHash& h, std::string_view descriptor) {
  if (descriptor.size() > kLargeCapacity) return false;
  const uint64_t want = digest(descriptor);
  return each_in_window(h, descriptor.size() > kCapacity, [&](size_t, Slot& s, uint64_t st) {
    return matches(s, st, h) && s.desc_hash.load(std::memory_order_relaxed) == want &&
           s.desc_len.load(std::memory_order_relaxed) == descriptor.size() &&
           s.state.compare_exchange_strong(st, next(st, kEmpty), std::memory_order_acq_rel);
  });
}

void KeyTable::remove_key(const KeyHash& h) {
  remove_key_in(h, false);
  remove_key_in(h, true);
}

void KeyTable::remove_key_in(const KeyHash& h, bool large) {
  each_in_window(h, large, [&](size_t, Slot& s, uint64_t st) {
    if (matches(s, st, h)) s.state.compare_exchange_strong(st, next(st, kEmpty));
    return false;
  });
}

bool KeyTable::remove(const Ticket& t) {
  uint64_t st = t.state;
  return slot(t.slot).state.compare_exchange_strong(st, next(st, kEmpty));
}

bool KeyTable::live(const Ticket& t) const {
  return slot(t.slot).state.load(std::memory_order_acquire) == t.state;
}

size_t KeyTable::sweep(std::chrono::milliseconds min_age,
                       const std::function<bool(uint64_t, int64_t)>& gone) {
  size_t removed = 0;
  const int64_t now = now_ns(), old = now - std::chrono::nanoseconds(min_age).count();
  for (uint32_t i = 0; i < kAllSlots; ++i) {
    Slot& s = slot(i);
    uint64_t st = s.state.load(std::memory_order_acquire);
    if (phase(st) == kBusy) {
      removed +=
          abandoned(i, st, old, now) && s.state.compare_exchange_strong(st, next(st, kEmpty));
      continue;
    }
    busy_.erase(i);
    if (phase(st) != kReady || s.published_ns.load(std::memory_order_relaxed) > old) continue;
    if (!gone(s.producer_id.load(std::memory_order_relaxed),
              s.pid.load(std::memory_order_relaxed))) {
      continue;
    }
    removed += s.state.compare_exchange_strong(st, next(st, kEmpty));
  }
  return removed;
}

// Busy in the same state since a sweep at least min_age ago: its writer died mid-publish.
bool KeyTable::abandoned(uint32_t i, uint64_t state, int64_t old, int64_t now) {
  auto [it, fresh] = busy_.try_emplace(i, Busy{state, now});
  if (fresh || it->second.state != state) {
    it->second = Busy{state, now};
    return false;
  }
  if (it->second.seen_ns > old) return false;
  busy_.erase(it);
  return true;
}

}  // namespace omniconn::shm
