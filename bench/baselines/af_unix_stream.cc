// af_unix_stream: payloads over an AF_UNIX SOCK_STREAM socketpair. The producer (a forked
// child) writes [u64 length][payload] from a warm buffer; the consumer (the parent) reads it
// into a warm, pre-faulted buffer of the same size. Both ends ask for 4 MiB socket buffers.
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <memory>

#include "baseline_common.h"

namespace {

using namespace baseline;  // NOLINT: helpers of this program

constexpr char kName[] = "af_unix_stream";
constexpr char kDescription[] =
    "one payload = [u64 length][bytes] written from a warm buffer into an AF_UNIX SOCK_STREAM "
    "socketpair and read into a warm, pre-faulted buffer (a copy into and one out of the "
    "kernel)";
constexpr int kSocketBuffer = 4 << 20;  // SO_SNDBUF and SO_RCVBUF asked for, both ends

// Sends or receives all bytes of two iovecs (header + payload), looping on partial transfers.
void transfer_all(int fd, iovec (&iov)[2], bool sending, const char* what) {
  iovec* v = iov;
  int n = 2;
  while (n > 0) {
    msghdr msg{};
    msg.msg_iov = v;
    msg.msg_iovlen = static_cast<size_t>(n);
    const ssize_t done = sending ? sendmsg(fd, &msg, MSG_NOSIGNAL) : recvmsg(fd, &msg, MSG_WAITALL);
    if (done < 0 && errno == EINTR) continue;
    if (done < 0) throw_io(what);
    if (done == 0 && !sending) throw Error(strf("%s: the producer closed the socket", what));
    size_t left = static_cast<size_t>(done);
    while (n > 0 && left >= v->iov_len) {
      left -= v->iov_len;
      ++v;
      --n;
    }
    if (n > 0) {
      v->iov_base = static_cast<uint8_t*>(v->iov_base) + left;
      v->iov_len -= left;
    }
  }
}

class StreamTransport : public Transport {
 public:
  explicit StreamTransport(int fd) : fd_(fd) {}

  void producer_prepare(size_t size) override { ensure(buffer_, size); }

  void send_payload(size_t size, bool stamp) override {
    uint8_t* src = buffer_->data();
    if (stamp) {
      const int64_t t0 = now_ns();
      std::memcpy(src, &t0, 8);
    }
    uint64_t header = size;
    iovec iov[2] = {{&header, sizeof header}, {src, size}};
    transfer_all(fd_, iov, true, "send payload");
  }

  void consumer_prepare(size_t size) override { ensure(buffer_, size); }

  Received recv_payload(size_t size) override {
    uint64_t header = 0;
    uint8_t* dst = buffer_->data();
    dst[size - 1] = 0;
    iovec iov[2] = {{&header, sizeof header}, {dst, size}};
    transfer_all(fd_, iov, false, "receive payload");
    Received r;
    r.at_ns = now_ns();
    std::memcpy(&r.stamp, dst, 8);
    if (header != size || (size > 8 && dst[size - 1] != kFill)) {
      throw Error("received a payload with the wrong length or contents");
    }
    return r;
  }

 private:
  static void ensure(std::unique_ptr<AlignedBuffer>& buffer, size_t size) {
    if (!buffer || buffer->size() != size) {
      buffer.reset();
      buffer = std::make_unique<AlignedBuffer>(size);
    }
  }

  int fd_;
  std::unique_ptr<AlignedBuffer> buffer_;  // the producer's source, the consumer's destination
};

// Asks for kSocketBuffer both ways; returns what the kernel reports (it doubles the request).
std::pair<int, int> set_buffers(int fd) {
  const int want = kSocketBuffer;
  if (setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &want, sizeof want) != 0 ||
      setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &want, sizeof want) != 0) {
    throw_errno("setsockopt(SO_SNDBUF/SO_RCVBUF)");
  }
  int snd = 0, rcv = 0;
  socklen_t len = sizeof snd;
  if (getsockopt(fd, SOL_SOCKET, SO_SNDBUF, &snd, &len) != 0) throw_errno("getsockopt");
  len = sizeof rcv;
  if (getsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcv, &len) != 0) throw_errno("getsockopt");
  return {snd, rcv};
}

void run(int argc, char** argv) {
  const Options opts = parse_options(argc, argv);
  if (opts.help) {
    print_usage(argv[0],
                "Payloads over an AF_UNIX SOCK_STREAM socketpair between two processes (the\n"
                "producer a forked child), [u64 length][bytes], 4 MiB socket buffers asked for.\n"
                "Reports stream GB/s (1 GB = 1e9 B) with CPU us per MiB of both processes, and\n"
                "ping-pong one-way latency p50/p99/p99.9.");
    return;
  }
  int fds[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) != 0) throw_errno("socketpair");
  const int consumer_fd = fds[0];
  const int producer_fd = fds[1];
  struct Closer {
    int a, b;
    ~Closer() {
      if (a >= 0) close(a);
      if (b >= 0) close(b);
    }
  } closer{consumer_fd, producer_fd};
  const auto [snd, rcv] = set_buffers(producer_fd);
  set_buffers(consumer_fd);
  set_socket_timeouts(consumer_fd);
  set_socket_timeouts(producer_fd);
  Child producer(kName, [&] {
    close(consumer_fd);
    StreamTransport t(producer_fd);
    serve(t, producer_fd);
  });
  close(producer_fd);
  closer.b = -1;
  std::printf(
      "%s: producer pid %d -> consumer pid %d, SO_SNDBUF/SO_RCVBUF asked %d, got %d/%d, %u CPUs, "
      "load average %s\n",
      kName, static_cast<int>(producer.pid()), static_cast<int>(getpid()), kSocketBuffer, snd, rcv,
      std::thread::hardware_concurrency(), load_average().c_str());
  std::fflush(stdout);
  StreamTransport t(consumer_fd);
  run_consumer(t, consumer_fd, producer, opts, kName, kDescription,
               {{"socket_buffer_requested", kSocketBuffer},
                {"so_sndbuf_effective", snd},
                {"so_rcvbuf_effective", rcv}});
}

}  // namespace

int main(int argc, char** argv) {
  return run_main(kName, [&] { run(argc, argv); });
}
