// KeyIndex: finds the SharedMemoryConnector's descriptor-mode payloads by key, from any process
// of the same user on the host. An entry (the writer's id and pid, the payload's descriptor)
// lives in the user's shared KeyTable when its descriptor fits a slot and the key's window has
// room: then publishing, claiming and removing it are atomic operations on shared memory, no
// syscall (shm_key_table.h). Otherwise it is one small file per (namespace, from, to, request
// id) in the per-user 0700 directory /dev/shm/omniconn-<uid>/, named by a 128-bit hash of the
// key (so any key is a safe name): writers create files atomically (temporary file + rename:
// a later put of the same key replaces the entry); a reader by key claims one by renaming it
// away (one claimer wins). A claim looks in the table first: the newest entry of a key is
// there unless it went to a file, and a put to a file removes the key's table entries.
// Whoever takes the payload, by key or by descriptor, removes its entry; a writer removes its
// own entries on cleanup and when it closes. A writer killed before it closes leaves entries
// behind: a bounded sweep removes those whose writer no longer listens on its socket (the
// check a claim makes), and the temporary and claimed files of dead processes.
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "omniconn/connector.h"
#include "shm/shm_key_table.h"
#include "shm/shm_os.h"

namespace omniconn::shm {

// When a KeyIndex sweeps: once when it first opens the directory, then at most every
// `interval`, on publish. A sweep reads at most `batch` names (the next sweep goes on where it
// stopped) and leaves files younger than `min_age` alone: a writer may still be renaming its
// temporary file, a reader still reading its claimed one.
struct SweepPolicy {
  std::chrono::milliseconds min_age{2000};
  std::chrono::milliseconds interval{5000};
  size_t batch = 256;
};

class KeyIndex {
 public:
  explicit KeyIndex(std::string name_space, SweepPolicy sweep = {})
      : name_space_(std::move(name_space)), policy_(sweep) {}
  ~KeyIndex();  // removes the entries this process wrote and nobody took
  KeyIndex(const KeyIndex&) = delete;
  KeyIndex& operator=(const KeyIndex&) = delete;

  // Writes the entry of `key`, replacing an older one.
  Status publish(const PayloadKey& key, uint64_t producer_id, std::string_view descriptor);
  // Claims the entry of `key` (nobody else gets it); nullopt while there is none.
  Result<std::optional<IndexEntry>> claim(const PayloadKey& key);
  // Gives a claimed entry back, unless a newer one has taken its place.
  void restore(const PayloadKey& key, const IndexEntry& entry);
  // Removes the entry of `key` if it names `descriptor` (its payload was taken by descriptor).
  void remove_if(const PayloadKey& key, std::string_view descriptor);
  // Removes this process's entries of the request, or all of them.
  void remove_request(std::string_view request_id);
  void remove_all();
  // Sweeps now (see SweepPolicy): removes the entries of writers that are gone and the
  // leftovers of dead processes among the next `batch` names; returns how many it removed.
  Result<size_t> sweep();

  // The directory (for messages and tests).
  static std::string directory();
  // The entry's file name within it.
  std::string entry_name(const PayloadKey& key) const;
  // True when an entry of `key` is in the index, in the table or in a file (for tests).
  bool holds(const PayloadKey& key);

 private:
  struct Mine {
    std::string name;                        // the entry's file, or
    std::optional<KeyTable::Ticket> ticket;  // its slot in the table
    std::string request_id;
    uint64_t producer_id;
  };
  KeyHash hash(const PayloadKey& key) const;
  bool taken(int dfd, const Mine& m) const;
  Result<int> dir();
  Result<int> open_dir();
  Status write_entry(int dfd, const std::string& name, uint64_t producer_id, int64_t pid,
                     std::string_view descriptor, bool replace);
  void remove_mine(const Mine& m);
  size_t sweep_locked(int dfd);
  std::vector<std::string> next_names(int dfd);
  bool sweep_one(int dfd, const std::string& name, std::map<uint64_t, bool>* gone);

  const std::string name_space_;
  const SweepPolicy policy_;
  std::mutex mu_;
  Fd dir_;
  std::unique_ptr<KeyTable> table_;  // null where it cannot be mapped: files only
  std::deque<Mine> mine_;            // entries this process wrote, oldest first (pruned as they go)
  std::chrono::steady_clock::time_point last_sweep_{};
  long cursor_ = 0;  // where the next sweep reads on (telldir), 0: from the start
};

}  // namespace omniconn::shm
