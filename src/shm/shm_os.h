// Thin, Status-returning wrappers over the Linux primitives the SharedMemoryConnector uses:
// memfd, mmap, abstract-namespace SOCK_SEQPACKET sockets with SCM_RIGHTS and SO_PEERCRED,
// futex. Nothing here touches /dev/shm (the key index, shm_key_index.h, does).
#pragma once

#include <sys/types.h>

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>

#include "omniconn/deadline.h"
#include "omniconn/status.h"

namespace omniconn::shm {

// Owns a file descriptor.
class Fd {
 public:
  Fd() = default;
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd() { reset(); }
  Fd(Fd&& o) noexcept : fd_(o.release()) {}
  Fd& operator=(Fd&& o) noexcept {
    if (this != &o) reset(o.release());
    return *this;
  }
  int get() const { return fd_; }
  bool valid() const { return fd_ >= 0; }
  int release() {
    int fd = fd_;
    fd_ = -1;
    return fd;
  }
  void reset(int fd = -1);

 private:
  int fd_ = -1;
};

// A shared mapping, unmapped on destruction.
class Mapping {
 public:
  Mapping() = default;
  Mapping(void* addr, size_t len) : addr_(addr), len_(len) {}
  ~Mapping();
  Mapping(Mapping&& o) noexcept : addr_(o.addr_), len_(o.len_) { o.addr_ = nullptr; }
  Mapping& operator=(Mapping&& o) noexcept;
  std::byte* data() const { return static_cast<std::byte*>(addr_); }
  size_t size() const { return len_; }

 private:
  void* addr_ = nullptr;
  size_t len_ = 0;
};

std::string errno_text(int err);

// memfd of `size` bytes, pages allocated, sealed against shrink and grow.
Result<Fd> create_memfd(const char* name, size_t size);
Result<size_t> fd_size(int fd);
// Maps [offset, offset+len) of `fd`; `writable` picks PROT_WRITE; `populate` pre-faults.
Result<Mapping> map_fd(int fd, size_t offset, size_t len, bool writable, bool populate);
// Maps [offset, offset+len) of `fd` copy-on-write (MAP_PRIVATE, read-write): reads see the
// shared pages, a write copies the page it touches into this mapping alone. `offset` is
// rounded down to a page; the mapping covers the range, and *at is the range's first byte.
Result<Mapping> map_private(int fd, size_t offset, size_t len, std::byte** at);

// Abstract-namespace socket names ("\0omniconn.<uid>.…").
std::string producer_socket_name(uint64_t producer_id);
std::string edge_socket_name(std::string_view name_space, std::string_view from,
                             std::string_view to);

// Listens on `name`; *in_use (when given) tells whether another socket already has the name.
Result<Fd> listen_abstract(const std::string& name, bool* in_use = nullptr);
// Connects; NotFound while nobody listens (ECONNREFUSED/ENOENT), Unavailable on other errors.
Result<Fd> connect_abstract(const std::string& name);
// Whether nobody listens on `name` (a connect is refused: the process that bound it is gone).
// Never waits: a full backlog, or any other failure, counts as someone listening.
bool nobody_listens(const std::string& name);
Result<Fd> accept_conn(int listen_fd);
// True when the peer runs under our effective uid.
Result<bool> peer_is_same_user(int fd);

// One message (and optionally one fd) over a SOCK_SEQPACKET socket.
Status send_msg(int fd, std::span<const std::byte> msg, int pass_fd = -1);
// Waits until `deadline` for one message; returns its length; *got_fd gets a passed fd.
Result<size_t> recv_msg(int fd, std::span<std::byte> buf, Fd* got_fd, Deadline deadline);
// True when the peer hung up (non-blocking check).
bool peer_hung_up(int fd);

// Futex on a shared (not process-private) 32-bit word.
void futex_wait(std::atomic<uint32_t>* word, uint32_t expected, std::chrono::nanoseconds timeout);
void futex_wake_all(std::atomic<uint32_t>* word);

uint64_t random_u64();

}  // namespace omniconn::shm
