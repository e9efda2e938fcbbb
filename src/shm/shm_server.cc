#include "shm/shm_server.h"

#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

namespace omniconn::shm {

namespace {

constexpr uint32_t kFirstReaderId = 2;  // 0: nobody; 1: reserved

std::span<const std::byte> as_bytes_of(const Reply& r) {
  return {reinterpret_cast<const std::byte*>(&r), sizeof r};
}

}  // namespace

Result<std::unique_ptr<ShmServer>> ShmServer::start(uint64_t producer_id, ShmAllocator* segments) {
  std::unique_ptr<ShmServer> s(new ShmServer(producer_id, segments));
  s->next_reader_ = kFirstReaderId;
  s->epoll_ = Fd(::epoll_create1(EPOLL_CLOEXEC));
  s->wake_ = Fd(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!s->epoll_.valid() || !s->wake_.valid()) return Status::Unavailable("epoll/eventfd failed");
  auto l = listen_abstract(producer_socket_name(producer_id));
  if (!l.ok()) return l.status().WithContext("writer socket");
  s->listen_ = std::move(*l);
  OMNICONN_RETURN_IF_ERROR(s->watch(s->wake_.get()));
  OMNICONN_RETURN_IF_ERROR(s->watch(s->listen_.get()));
  s->thread_ = std::thread([srv = s.get()] { srv->run(); });
  return s;
}

ShmServer::~ShmServer() {
  if (!thread_.joinable()) return;
  uint64_t one = 1;
  [[maybe_unused]] ssize_t n = ::write(wake_.get(), &one, sizeof one);
  thread_.join();
}

Status ShmServer::watch(int fd) {
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.fd = fd;
  if (::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, fd, &ev) != 0) {
    return Status::Unavailable("epoll_ctl: " + errno_text(errno));
  }
  return Status::Ok();
}

Status ShmServer::serve_edge(const std::string& edge_socket, int ring_fd, bool* in_use) {
  auto l = listen_abstract(edge_socket, in_use);
  if (!l.ok()) return l.status();
  Fd ring(::dup(ring_fd));  // our own: the sender may close its copy at any time
  if (!ring.valid()) return Status::Unavailable("dup: " + errno_text(errno));
  int fd = l->get();
  {
    std::lock_guard lock(mu_);
    edges_.emplace(fd, std::make_pair(std::move(*l), std::move(ring)));
  }
  return watch(fd);
}

void ShmServer::run() {
  epoll_event events[32];
  for (;;) {
    int n = ::epoll_wait(epoll_.get(), events, 32, -1);
    for (int i = 0; i < n; ++i) {
      int fd = events[i].data.fd;
      if (fd == wake_.get()) return;
      handle(fd);
    }
  }
}

void ShmServer::handle(int fd) {
  if (fd == listen_.get()) return accept_reader(fd, -1);
  int ring_fd = -2;
  {
    std::lock_guard lock(mu_);
    auto it = edges_.find(fd);
    if (it != edges_.end()) ring_fd = it->second.second.get();
  }
  if (ring_fd != -2) return accept_reader(fd, ring_fd);
  auto it = conns_.find(fd);
  if (it != conns_.end()) serve(it->second);
}

void ShmServer::accept_reader(int listen_fd, int ring_fd) {
  auto c = accept_conn(listen_fd);
  if (!c.ok()) return;
  auto same = peer_is_same_user(c->get());
  if (!same.ok() || !*same) return;  // refused: another user
  Conn conn{std::move(*c), next_reader_, ring_fd};
  next_reader_ = next_reader_ >= 0xFFFFFFu ? kFirstReaderId : next_reader_ + 1;
  Reply hello{0, conn.reader_id, producer_id_, 0, 0, ::getpid()};
  if (!send_msg(conn.fd.get(), as_bytes_of(hello)).ok()) return;
  int fd = conn.fd.get();
  if (!watch(fd).ok()) return;
  conns_.emplace(fd, std::move(conn));
}

void ShmServer::serve(Conn& conn) {
  Request req{};
  auto n = recv_msg(conn.fd.get(), {reinterpret_cast<std::byte*>(&req), sizeof req}, nullptr,
                    Clock::now());
  if (!n.ok() && n.status().code() == StatusCode::kTimeout) return;
  if (!n.ok() || *n != sizeof req) return drop(conn);
  Reply reply{0, conn.reader_id, producer_id_, 0, req.arg, ::getpid()};
  Fd to_pass;
  if (req.op == kOpMapSegment) {
    to_pass = segments_->segment_fd(req.arg, &reply.size);
  } else if (req.op == kOpRing && conn.ring_fd >= 0) {
    to_pass = Fd(::dup(conn.ring_fd));
  }
  if (!to_pass.valid()) reply.status = static_cast<uint32_t>(StatusCode::kNotFound);
  if (!send_msg(conn.fd.get(), as_bytes_of(reply), to_pass.get()).ok()) drop(conn);
}

void ShmServer::drop(Conn& conn) {
  uint32_t reader_id = conn.reader_id;
  ::epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, conn.fd.get(), nullptr);
  conns_.erase(conn.fd.get());
  segments_->release_reader(reader_id);
}

}  // namespace omniconn::shm
