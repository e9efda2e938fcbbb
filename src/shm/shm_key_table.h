// KeyTable: the key index's fast path. One shared table per user,
// /dev/shm/omniconn-<uid>/keys-v2, mapped by every connector of the user: 512 small slots
// (descriptors up to 8 KiB: every reference, inline payloads up to ~7.9 KiB) and 64 large ones
// (up to 72 KiB: inline payloads up to the default 64 KiB threshold), each a 64-byte head
// apart from its body. Publishing, finding, claiming and removing an entry are atomic
// operations on its slot's state word: no syscall, no lock. The key's 128-bit hash picks a
// window of 16 slots in each class; an entry that does not fit, or finds its window full, goes
// to the index's entry files.
//
// A slot's state is generation << 2 | phase (empty, busy, ready). Every change of a slot's
// contents first moves its state away (a CAS), so a reader that copied a ready entry and then
// moves its state on (a CAS from the state it read) has copied a consistent entry, seqlock
// style. Fields and descriptor bytes are read and written as relaxed atomics.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string_view>

#include "omniconn/status.h"
#include "shm/shm_os.h"

namespace omniconn::shm {

struct IndexEntry {
  uint64_t producer_id = 0;
  int64_t pid = 0;  // the writer's process: a sweep never removes the entry while it exists
  std::string descriptor;
};

// An entry to publish, borrowed from the caller.
struct EntryRef {
  uint64_t producer_id = 0;
  int64_t pid = 0;
  std::string_view descriptor;
};

struct KeyHash {
  uint64_t hi = 0;
  uint64_t lo = 0;
};

class KeyTable {
 public:
  static constexpr size_t kSlots = 512;  // small ones; the large ones follow
  static constexpr size_t kLargeSlots = 64;
  static constexpr size_t kWindow = 16;
  static constexpr size_t kCapacity = 8192;            // descriptor bytes of a small slot
  static constexpr size_t kLargeCapacity = 72 * 1024;  // of a large one: the most an entry holds

  // A published entry, as its writer remembers it: gone once the slot's state moved on.
  struct Ticket {
    uint32_t slot = 0;
    uint64_t state = 0;
  };

  // Maps the table in directory `dfd` (created on first use, 0600, this user's only).
  static Result<std::unique_ptr<KeyTable>> open(int dfd);

  // Publishes the entry of `h`, replacing one of the same key; nullopt when the descriptor is
  // larger than a slot or the key's window has no free slot.
  std::optional<Ticket> publish(const KeyHash& h, const EntryRef& e);
  // Copies out an entry of `h` and frees its slot (nobody else gets it); nullopt when none.
  std::optional<IndexEntry> claim(const KeyHash& h);
  // True when an entry of `h` is here.
  bool holds(const KeyHash& h) const;
  // Removes the entry of `h` whose descriptor is `descriptor`; false when there is none.
  bool remove_if(const KeyHash& h, std::string_view descriptor);
  // Removes every entry of `h` (a put of the key went to the files: the newest wins).
  void remove_key(const KeyHash& h);
  // Removes the ticket's entry if it is still the one published.
  bool remove(const Ticket& t);
  bool live(const Ticket& t) const;
  // Removes ready entries older than `min_age` whose writer `gone` says is gone, and entries
  // left busy (a writer died mid-publish) in the same state since a sweep min_age ago. The
  // whole table each time: 1024 atomic loads, and `gone` once per writer found.
  size_t sweep(std::chrono::milliseconds min_age,
               const std::function<bool(uint64_t producer_id, int64_t pid)>& gone);

 private:
  struct Slot;
  explicit KeyTable(Mapping m) : map_(std::move(m)) {}
  Slot& slot(size_t i) const;
  size_t index_of(const Slot& s) const;
  std::atomic<uint64_t>* words(const Slot& s) const;
  size_t capacity(const Slot& s) const;
  template <typename Fn>
  bool each_in_window(const KeyHash& h, bool large, Fn&& fn) const;
  template <typename Fn>
  bool each_in_windows(const KeyHash& h, Fn&& fn) const;
  bool matches(const Slot& s, uint64_t state, const KeyHash& h) const;
  std::optional<Ticket> take_slot(const KeyHash& h, bool large);
  void remove_key_in(const KeyHash& h, bool large);
  void fill(Slot& s, const KeyHash& h, const EntryRef& e);

  struct Busy {
    uint64_t state;
    int64_t seen_ns;
  };
  bool abandoned(uint32_t i, uint64_t state, int64_t old, int64_t now);

  Mapping map_;
  std::map<uint32_t, Busy> busy_;  // slots a sweep saw busy: the state and when first seen
};

}  // namespace omniconn::shm
