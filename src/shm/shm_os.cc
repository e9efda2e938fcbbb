#include "shm/shm_os.h"

#include <fcntl.h>
#include <linux/futex.h>
#include <poll.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <unistd.h>
#include <xxhash.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

namespace omniconn::shm {

void Fd::reset(int fd) {
  if (fd_ >= 0) ::close(fd_);
  fd_ = fd;
}

Mapping::~Mapping() {
  if (addr_ != nullptr) ::munmap(addr_, len_);
}

Mapping& Mapping::operator=(Mapping&& o) noexcept {
  if (this != &o) {
    if (addr_ != nullptr) ::munmap(addr_, len_);
    addr_ = o.addr_;
    len_ = o.len_;
    o.addr_ = nullptr;
  }
  return *this;
}

std::string errno_text(int err) {
  char buf[128];
  return std::string(strerror_r(err, buf, sizeof buf));
}

Result<Fd> create_memfd(const char* name, size_t size) {
  Fd fd(::memfd_create(name, MFD_CLOEXEC | MFD_ALLOW_SEALING));
  if (!fd.valid()) {
    return Status::ResourceExhausted("memfd_create: " + errno_text(errno));
  }
  if (::ftruncate(fd.get(), static_cast<off_t>(size)) != 0) {
    return Status::ResourceExhausted("ftruncate memfd to " + std::to_string(size) +
                                     " bytes: " + errno_text(errno));
  }
  if (::fallocate(fd.get(), 0, 0, static_cast<off_t>(size)) != 0 && errno != EOPNOTSUPP) {
    return Status::ResourceExhausted("allocating " + std::to_string(size) +
                                     " bytes of shared memory: " + errno_text(errno));
  }
  if (::fcntl(fd.get(), F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) != 0) {
    return Status::Internal("sealing memfd: " + errno_text(errno));
  }
  return fd;
}

Result<size_t> fd_size(int fd) {
  struct stat st {};
  if (::fstat(fd, &st) != 0) return Status::Internal("fstat: " + errno_text(errno));
  return static_cast<size_t>(st.st_size);
}

Result<Mapping> map_fd(int fd, size_t offset, size_t len, bool writable, bool populate) {
  int prot = PROT_READ | (writable ? PROT_WRITE : 0);
  int flags = MAP_SHARED | (populate ? MAP_POPULATE : 0);
  void* p = ::mmap(nullptr, len, prot, flags, fd, static_cast<off_t>(offset));
  if (p == MAP_FAILED) {
    return Status::ResourceExhausted("mmap of " + std::to_string(len) +
                                     " bytes: " + errno_text(errno));
  }
  return Mapping(p, len);
}

Result<Mapping> map_private(int fd, size_t offset, size_t len, std::byte** at) {
  static const size_t kPage = static_cast<size_t>(::sysconf(_SC_PAGESIZE));
  size_t start = offset / kPage * kPage;
  size_t span = (offset + len + kPage - 1) / kPage * kPage - start;
  void* p =
      ::mmap(nullptr, span, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, static_cast<off_t>(start));
  if (p == MAP_FAILED) {
    return Status::ResourceExhausted("copy-on-write mmap of " + std::to_string(span) +
                                     " bytes: " + errno_text(errno));
  }
  *at = static_cast<std::byte*>(p) + (offset - start);
  return Mapping(p, span);
}

namespace {

char hex_digit(unsigned v) {
  return "0123456789abcdef"[v & 15];
}

std::string hex64(uint64_t v) {
  std::string s(16, '0');
  for (int i = 15; i >= 0; --i, v >>= 4) s[static_cast<size_t>(i)] = hex_digit(v & 15);
  return s;
}

std::string base_name() {
  return std::string(1, '\0') + "omniconn." + std::to_string(::geteuid());
}

socklen_t fill_addr(const std::string& name, sockaddr_un* addr) {
  std::memset(addr, 0, sizeof *addr);
  addr->sun_family = AF_UNIX;
  std::memcpy(addr->sun_path, name.data(), name.size());
  return static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + name.size());
}

}  // namespace

// Without the uid: the random producer id is unique on its own, and a reader of another uid
// then reaches the writer and is told why it is refused (SO_PEERCRED on both sides), instead
// of finding no socket and reporting the writer gone.
std::string producer_socket_name(uint64_t producer_id) {
  return std::string(1, '\0') + "omniconn.p." + hex64(producer_id);
}

std::string edge_socket_name(std::string_view name_space, std::string_view from,
                             std::string_view to) {
  std::string id;
  for (std::string_view part : {name_space, from, to}) {
    id += std::to_string(part.size()) + ":" + std::string(part);
  }
  return base_name() + ".e." + hex64(XXH3_64bits(id.data(), id.size()));
}

Result<Fd> listen_abstract(const std::string& name, bool* in_use) {
  if (in_use != nullptr) *in_use = false;
  Fd fd(::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (!fd.valid()) return Status::Unavailable("socket: " + errno_text(errno));
  sockaddr_un addr;
  socklen_t len = fill_addr(name, &addr);
  if (::bind(fd.get(), reinterpret_cast<sockaddr*>(&addr), len) != 0) {
    int err = errno;
    if (err == EADDRINUSE && in_use != nullptr) *in_use = true;
    return Status::Unavailable("bind: " + errno_text(err));
  }
  if (::listen(fd.get(), 64) != 0) return Status::Unavailable("listen: " + errno_text(errno));
  return fd;
}

Result<Fd> connect_abstract(const std::string& name) {
  Fd fd(::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0));
  if (!fd.valid()) return Status::Unavailable("socket: " + errno_text(errno));
  sockaddr_un addr;
  socklen_t len = fill_addr(name, &addr);
  if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), len) != 0) {
    int err = errno;
    if (err == ECONNREFUSED || err == ENOENT) return Status::NotFound("nobody listens");
    return Status::Unavailable("connect: " + errno_text(err));
  }
  return fd;
}

bool nobody_listens(const std::string& name) {
  Fd fd(::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (!fd.valid()) return false;
  sockaddr_un addr;
  socklen_t len = fill_addr(name, &addr);
  if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), len) == 0) return false;
  return errno == ECONNREFUSED || errno == ENOENT;
}

Result<Fd> accept_conn(int listen_fd) {
  Fd fd(::accept4(listen_fd, nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK));
  if (!fd.valid()) return Status::Unavailable("accept: " + errno_text(errno));
  return fd;
}

Result<bool> peer_is_same_user(int fd) {
  ucred cred{};
  socklen_t len = sizeof cred;
  if (::getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) {
    return Status::Unavailable("SO_PEERCRED: " + errno_text(errno));
  }
  return cred.uid == ::geteuid();
}

Status send_msg(int fd, std::span<const std::byte> msg, int pass_fd) {
  iovec iov{const_cast<std::byte*>(msg.data()), msg.size()};
  msghdr hdr{};
  hdr.msg_iov = &iov;
  hdr.msg_iovlen = 1;
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
  if (pass_fd >= 0) {
    hdr.msg_control = control;
    hdr.msg_controllen = sizeof control;
    cmsghdr* c = CMSG_FIRSTHDR(&hdr);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    std::memcpy(CMSG_DATA(c), &pass_fd, sizeof(int));
  }
  ssize_t n;
  do {
    n = ::sendmsg(fd, &hdr, MSG_NOSIGNAL);
  } while (n < 0 && errno == EINTR);
  if (n < 0) return Status::Unavailable("sendmsg: " + errno_text(errno));
  return Status::Ok();
}

namespace {

int poll_timeout_ms(Deadline deadline) {
  if (deadline == Deadline::max()) return 1000;
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
  if (left.count() <= 0) return 0;
  return static_cast<int>(std::min<int64_t>(left.count() + 1, 1000));
}

// Waits for POLLIN; false on timeout.
Result<bool> wait_readable(int fd, Deadline deadline) {
  for (;;) {
    pollfd p{fd, POLLIN, 0};
    int rc = ::poll(&p, 1, poll_timeout_ms(deadline));
    if (rc < 0 && errno != EINTR) return Status::Unavailable("poll: " + errno_text(errno));
    if (rc > 0) return true;
    if (Clock::now() >= deadline) return false;
  }
}

void take_fd(msghdr* hdr, Fd* got_fd) {
  for (cmsghdr* c = CMSG_FIRSTHDR(hdr); c != nullptr; c = CMSG_NXTHDR(hdr, c)) {
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
    int fd;
    std::memcpy(&fd, CMSG_DATA(c), sizeof fd);
    if (got_fd != nullptr) {
      got_fd->reset(fd);
    } else {
      ::close(fd);
    }
  }
}

}  // namespace

Result<size_t> recv_msg(int fd, std::span<std::byte> buf, Fd* got_fd, Deadline deadline) {
  auto ready = wait_readable(fd, deadline);
  if (!ready.ok()) return ready.status();
  if (!*ready) return Status::Timeout("no reply from the writer process");
  iovec iov{buf.data(), buf.size()};
  msghdr hdr{};
  hdr.msg_iov = &iov;
  hdr.msg_iovlen = 1;
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
  hdr.msg_control = control;
  hdr.msg_controllen = sizeof control;
  ssize_t n;
  do {
    n = ::recvmsg(fd, &hdr, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
  } while (n < 0 && errno == EINTR);
  if (n < 0) return Status::Unavailable("recvmsg: " + errno_text(errno));
  take_fd(&hdr, got_fd);
  if (n == 0) return Status::Unavailable("the writer process closed the connection");
  if (hdr.msg_flags & MSG_TRUNC) return Status::Corrupt("truncated message");
  // The kernel drops a passed descriptor that this process has no room for (RLIMIT_NOFILE).
  if (hdr.msg_flags & MSG_CTRUNC) {
    return Status::ResourceExhausted(
        "a segment passed by the writer was dropped: "
        "out of file descriptors?");
  }
  return static_cast<size_t>(n);
}

bool peer_hung_up(int fd) {
  pollfd p{fd, POLLIN, 0};
  if (::poll(&p, 1, 0) <= 0) return false;
  if (p.revents & (POLLHUP | POLLERR)) return true;
  char c;
  ssize_t n = ::recv(fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);
  return n == 0;
}

void futex_wait(std::atomic<uint32_t>* word, uint32_t expected, std::chrono::nanoseconds timeout) {
  auto secs = std::chrono::duration_cast<std::chrono::seconds>(timeout);
  timespec ts{static_cast<time_t>(secs.count()), static_cast<long>((timeout - secs).count())};
  ::syscall(SYS_futex, reinterpret_cast<uint32_t*>(word), FUTEX_WAIT, expected, &ts, nullptr, 0);
}

void futex_wake_all(std::atomic<uint32_t>* word) {
  ::syscall(SYS_futex, reinterpret_cast<uint32_t*>(word), FUTEX_WAKE, INT32_MAX, nullptr, nullptr,
            0);
}

uint64_t random_u64() {
  uint64_t v = 0;
  while (::getrandom(&v, sizeof v, 0) != sizeof v) {
  }
  return v;
}

}  // namespace omniconn::shm
