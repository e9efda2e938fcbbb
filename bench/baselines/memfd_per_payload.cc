// memfd_per_payload: what per-payload shared-memory segments pay. For every payload the
// producer (a forked child) does memfd_create + ftruncate + mmap + memcpy from a warm source +
// munmap and passes the fd with SCM_RIGHTS over an AF_UNIX socketpair (then closes it); the
// consumer (the parent) receives the fd, fstat, mmap PROT_READ, reads the stamp and the last
// byte, munmap, close.
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <memory>

#include "baseline_common.h"

namespace {

using namespace baseline;  // NOLINT: helpers of this program

constexpr char kName[] = "memfd_per_payload";
constexpr char kDescription[] =
    "one payload = a new memfd (memfd_create, ftruncate, mmap MAP_POPULATE, memcpy from a warm "
    "buffer, munmap) passed with SCM_RIGHTS over an AF_UNIX SOCK_SEQPACKET socketpair; the "
    "consumer fstat, mmap, reads the first 8 and the last byte, munmap, close";

// MAP_POPULATE: the producer's mapping is filled in one call rather than a fault per page (within
// ~10% of faulting in the memcpy, or of fallocate first, on the development VM).
constexpr int kProducerMapFlags = MAP_SHARED | MAP_POPULATE;

// Closes an fd on scope exit.
struct Fd {
  int fd = -1;
  explicit Fd(int f) : fd(f) {}
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  ~Fd() {
    if (fd >= 0) close(fd);
  }
};

class MemfdTransport : public Transport {
 public:
  explicit MemfdTransport(int fd) : fd_(fd) {}

  void producer_prepare(size_t size) override {
    if (!source_ || source_->size() != size) {
      source_.reset();
      source_ = std::make_unique<AlignedBuffer>(size);
    }
  }

  void send_payload(size_t size, bool stamp) override {
    uint8_t* src = source_->data();
    if (stamp) {
      const int64_t t0 = now_ns();
      std::memcpy(src, &t0, 8);
    }
    Fd memfd(memfd_create(kName, MFD_CLOEXEC));
    if (memfd.fd < 0) throw_errno("memfd_create");
    if (ftruncate(memfd.fd, static_cast<off_t>(size)) != 0) throw_errno("ftruncate");
    void* map = mmap(nullptr, size, PROT_READ | PROT_WRITE, kProducerMapFlags, memfd.fd, 0);
    if (map == MAP_FAILED) throw_errno("mmap (producer)");
    std::memcpy(map, src, size);
    if (munmap(map, size) != 0) throw_errno("munmap (producer)");
    send_fd(memfd.fd, size);
  }

  void consumer_prepare(size_t) override {}

  Received recv_payload(size_t size) override {
    Fd memfd(recv_fd(size));
    struct stat st {};
    if (fstat(memfd.fd, &st) != 0) throw_errno("fstat");
    if (st.st_size != static_cast<off_t>(size)) {
      throw Error(strf("received a segment of %lld bytes, want %zu",
                       static_cast<long long>(st.st_size), size));
    }
    void* map = mmap(nullptr, size, PROT_READ, MAP_SHARED, memfd.fd, 0);
    if (map == MAP_FAILED) throw_errno("mmap (consumer)");
    const auto* bytes = static_cast<const volatile uint8_t*>(map);
    Received r;
    uint8_t stamp[8];
    for (size_t i = 0; i < 8; ++i) stamp[i] = bytes[i];
    const uint8_t last = bytes[size - 1];
    r.at_ns = now_ns();
    std::memcpy(&r.stamp, stamp, 8);
    if (munmap(map, size) != 0) throw_errno("munmap (consumer)");
    if (size > 8 && last != kFill) throw Error("received a segment with the wrong contents");
    return r;
  }

 private:
  // The record carries the payload size; the fd rides along as SCM_RIGHTS.
  void send_fd(int memfd, uint64_t size) {
    iovec iov{&size, sizeof size};
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control;
    msg.msg_controllen = sizeof control;
    cmsghdr* cmsg = CMSG_FIRSTHDR(&msg);
    cmsg->cmsg_level = SOL_SOCKET;
    cmsg->cmsg_type = SCM_RIGHTS;
    cmsg->cmsg_len = CMSG_LEN(sizeof(int));
    std::memcpy(CMSG_DATA(cmsg), &memfd, sizeof(int));
    for (;;) {
      const ssize_t w = sendmsg(fd_, &msg, MSG_NOSIGNAL);
      if (w < 0 && errno == EINTR) continue;
      if (w < 0) throw_io("sendmsg (SCM_RIGHTS)");
      if (static_cast<size_t>(w) != sizeof size) throw Error("sendmsg: short write");
      return;
    }
  }

  int recv_fd(size_t want) {
    uint64_t size = 0;
    iovec iov{&size, sizeof size};
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control;
    msg.msg_controllen = sizeof control;
    ssize_t r;
    do {
      r = recvmsg(fd_, &msg, MSG_CMSG_CLOEXEC);
    } while (r < 0 && errno == EINTR);
    if (r < 0) throw_io("recvmsg (SCM_RIGHTS)");
    if (r == 0) throw Error("recvmsg: the producer closed the socket");
    int memfd = -1;
    for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
      if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS &&
          c->cmsg_len == CMSG_LEN(sizeof(int))) {
        std::memcpy(&memfd, CMSG_DATA(c), sizeof(int));
      }
    }
    if (memfd < 0 || (msg.msg_flags & (MSG_CTRUNC | MSG_TRUNC)) != 0 || r != sizeof size ||
        size != want) {
      if (memfd >= 0) close(memfd);
      throw Error("received a malformed payload record");
    }
    return memfd;
  }

  int fd_;
  std::unique_ptr<AlignedBuffer> source_;
};

void run(int argc, char** argv) {
  const Options opts = parse_options(argc, argv);
  if (opts.help) {
    print_usage(argv[0],
                "Per-payload shared-memory segments between two processes (the producer a forked "
                "child):\n"
                "every payload is a new memfd, written from a warm buffer and passed with "
                "SCM_RIGHTS.\n"
                "Reports stream GB/s (1 GB = 1e9 B) with CPU us per MiB of both processes, and\n"
                "ping-pong one-way latency p50/p99/p99.9.");
    return;
  }
  int fds[2];
  if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, fds) != 0) throw_errno("socketpair");
  Fd consumer_end(fds[0]);
  Fd producer_end(fds[1]);
  set_socket_timeouts(consumer_end.fd);
  set_socket_timeouts(producer_end.fd);
  Child producer(kName, [&] {
    close(consumer_end.fd);
    MemfdTransport t(producer_end.fd);
    serve(t, producer_end.fd);
  });
  close(producer_end.fd);
  producer_end.fd = -1;
  std::printf("%s: producer pid %d -> consumer pid %d, %u CPUs, load average %s\n", kName,
              static_cast<int>(producer.pid()), static_cast<int>(getpid()),
              std::thread::hardware_concurrency(), load_average().c_str());
  std::fflush(stdout);
  MemfdTransport t(consumer_end.fd);
  run_consumer(t, consumer_end.fd, producer, opts, kName, kDescription,
               {{"map_populate", (kProducerMapFlags & MAP_POPULATE) != 0}});
}

}  // namespace

int main(int argc, char** argv) {
  return run_main(kName, [&] { run(argc, argv); });
}
