#include "shm_writer.h"

#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>

namespace omniconn::shm {

namespace {

constexpr size_t kAlign = 64;
constexpr uint32_t kFirstReaderId = 2;  // 0: nobody; 1: reserved

size_t round_up(size_t n, size_t a) {
  return (n + a - 1) / a * a;
}

Result<std::unique_ptr<Segment>> create_segment(uint64_t producer_id, uint32_t id,
                                                uint32_t slot_count, size_t data_size) {
  size_t data_offset = segment_data_offset(slot_count);
  size_t total = data_offset + round_up(data_size, kPage);
  auto fd = create_memfd("omniconn-segment", total);
  if (!fd.ok()) return fd.status();
  auto map = map_fd(fd->get(), 0, total, /*writable=*/true, /*populate=*/true);
  if (!map.ok()) return map.status();
  auto seg = std::make_unique<Segment>();
  seg->id = id;
  seg->fd = std::move(*fd);
  seg->map = std::move(*map);
  seg->header = new (seg->map.data()) SegmentHeader{};
  seg->header->magic = kSegmentMagic;
  seg->header->version = 1;
  seg->header->slot_count = slot_count;
  seg->header->data_offset = data_offset;
  seg->header->data_size = total - data_offset;
  seg->header->producer_id = producer_id;
  seg->header->segment_id = id;
  seg->slots = reinterpret_cast<Slot*>(seg->map.data() + kSlotTableOffset);
  for (uint32_t i = 0; i < slot_count; ++i) new (&seg->slots[i]) Slot{};
  seg->data = seg->map.data() + data_offset;
  return seg;
}

std::span<const std::byte> as_bytes_of(const Reply& r) {
  return {reinterpret_cast<const std::byte*>(&r), sizeof r};
}

}  // namespace

// The socket server: accepts readers (same uid only), hands out segment and ring memfds, and
// reclaims the slots a reader held when its connection drops (the reader died).
struct ShmWriter::Server {
  struct Conn {
    Fd fd;
    uint32_t reader_id = 0;
    int ring_fd = -1;
  };

  ShmWriter* writer = nullptr;
  Fd epoll;
  Fd wake;
  Fd listen;
  std::mutex mu;                           // guards edges
  std::map<int, std::pair<Fd, Fd>> edges;  // listen fd -> (listen, own dup of ring)
  std::map<int, Conn> conns;               // server thread only
  uint32_t next_reader = kFirstReaderId;
  std::thread thread;

  Status start(ShmWriter* w) {
    writer = w;
    epoll = Fd(::epoll_create1(EPOLL_CLOEXEC));
    wake = Fd(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
    if (!epoll.valid() || !wake.valid()) return Status::Unavailable("epoll/eventfd failed");
    auto l = listen_abstract(producer_socket_name(w->producer_id()));
    if (!l.ok()) return l.status().WithContext("writer socket");
    listen = std::move(*l);
    OMNICONN_RETURN_IF_ERROR(watch(wake.get()));
    OMNICONN_RETURN_IF_ERROR(watch(listen.get()));
    thread = std::thread([this] { run(); });
    return Status::Ok();
  }

  void stop() {
    if (!thread.joinable()) return;
    uint64_t one = 1;
    [[maybe_unused]] ssize_t n = ::write(wake.get(), &one, sizeof one);
    thread.join();
  }

  Status watch(int fd) {
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.fd = fd;
    if (::epoll_ctl(epoll.get(), EPOLL_CTL_ADD, fd, &ev) != 0) {
      return Status::Unavailable("epoll_ctl: " + errno_text(errno));
    }
    return Status::Ok();
  }

  // Keeps its own duplicate of the ring fd, so the sender may close its copy at any time.
  Status add_edge(Fd l, int ring_fd) {
    Fd ring(::dup(ring_fd));
    if (!ring.valid()) return Status::Unavailable("dup: " + errno_text(errno));
    int fd = l.get();
    {
      std::lock_guard lock(mu);
      edges.emplace(fd, std::make_pair(std::move(l), std::move(ring)));
    }
    return watch(fd);
  }

  void run() {
    epoll_event events[32];
    for (;;) {
      int n = ::epoll_wait(epoll.get(), events, 32, -1);
      for (int i = 0; i < n; ++i) {
        int fd = events[i].data.fd;
        if (fd == wake.get()) return;
        handle(fd);
      }
    }
  }

  void handle(int fd) {
    if (fd == listen.get()) return accept_reader(fd, -1);
    int ring_fd = -2;
    {
      std::lock_guard lock(mu);
      auto it = edges.find(fd);
      if (it != edges.end()) ring_fd = it->second.second.get();
    }
    if (ring_fd != -2) return accept_reader(fd, ring_fd);
    auto it = conns.find(fd);
    if (it != conns.end()) serve(it->second);
  }

  void accept_reader(int listen_fd, int ring_fd) {
    auto c = accept_conn(listen_fd);
    if (!c.ok()) return;
    auto same = peer_is_same_user(c->get());
    if (!same.ok() || !*same) return;  // refused: another user
    Conn conn{std::move(*c), next_reader, ring_fd};
    next_reader = next_reader >= 0xFFFFFFu ? kFirstReaderId : next_reader + 1;
    Reply hello{0, conn.reader_id, writer->producer_id(), 0, 0, ::getpid()};
    if (!send_msg(conn.fd.get(), as_bytes_of(hello)).ok()) return;
    int fd = conn.fd.get();
    if (!watch(fd).ok()) return;
    conns.emplace(fd, std::move(conn));
  }

  void serve(Conn& conn) {
    Request req{};
    auto n = recv_msg(conn.fd.get(), {reinterpret_cast<std::byte*>(&req), sizeof req}, nullptr,
                      Clock::now());
    if (!n.ok() && n.status().code() == StatusCode::kTimeout) return;
    if (!n.ok() || *n != sizeof req) return drop(conn);
    Reply reply{0, conn.reader_id, writer->producer_id(), 0, req.arg, ::getpid()};
    Fd to_pass;
    if (req.op == kOpMapSegment) {
      to_pass = Fd(writer->segment_fd_for_reader(req.arg, &reply.size));
    } else if (req.op == kOpRing && conn.ring_fd >= 0) {
      to_pass = Fd(::dup(conn.ring_fd));
    }
    if (!to_pass.valid()) reply.status = static_cast<uint32_t>(StatusCode::kNotFound);
    if (!send_msg(conn.fd.get(), as_bytes_of(reply), to_pass.get()).ok()) drop(conn);
  }

  void drop(Conn& conn) {
    uint32_t reader_id = conn.reader_id;
    ::epoll_ctl(epoll.get(), EPOLL_CTL_DEL, conn.fd.get(), nullptr);
    conns.erase(conn.fd.get());
    writer->release_dead_reader(reader_id);
  }
};

ShmWriter::ShmWriter(const ShmOptions& options) : options_(options), producer_id_(random_u64()) {}

ShmWriter::~ShmWriter() {
  if (server_) server_->stop();
}

Status ShmWriter::ensure_started_locked() {
  if (server_) return Status::Ok();
  auto server = std::make_unique<Server>();
  Status st = server->start(this);
  if (!st.ok()) {
    fatal_ = st;
    return st;
  }
  server_ = std::move(server);
  return Status::Ok();
}

Status ShmWriter::serve_edge(const std::string& edge_socket, int ring_fd) {
  {
    std::lock_guard lock(mu_);
    OMNICONN_RETURN_IF_ERROR(ensure_started_locked());
  }
  auto l = listen_abstract(edge_socket);
  if (!l.ok()) return l.status();
  return server_->add_edge(std::move(*l), ring_fd);
}

Status ShmWriter::create_arena_locked() {
  auto seg = create_segment(producer_id_, 0, static_cast<uint32_t>(options_.max_inflight),
                            options_.arena_bytes);
  if (!seg.ok()) return seg.status().WithContext("creating the shared-memory arena");
  arena_ = std::move(*seg);
  slots_.assign(options_.max_inflight, SlotInfo{});
  free_slots_.clear();
  for (size_t i = options_.max_inflight; i-- > 0;) free_slots_.push_back(static_cast<uint32_t>(i));
  free_.reset(arena_->header->data_size);
  return Status::Ok();
}

template <typename Fn>
void ShmWriter::for_each_in_use_locked(Fn&& fn) {
  if (arena_) {
    for (uint32_t i = 0; i < slots_.size(); ++i) {
      if (slots_[i].in_use) fn(arena_.get(), i, &slots_[i]);
    }
  }
  for (auto it = dedicated_.begin(); it != dedicated_.end();) {
    auto& d = (it++)->second;  // fn may free (erase) this entry
    fn(d.seg.get(), 0, &d.info);
  }
}

void ShmWriter::reclaim_locked(bool force) {
  bool scan_arena = false;
  if (arena_) {
    uint32_t seq = arena_->header->release_seq.load(std::memory_order_acquire);
    scan_arena = force || seq != last_release_seq_;
    last_release_seq_ = seq;
  }
  for_each_in_use_locked([&](Segment* seg, uint32_t slot, SlotInfo* info) {
    if (seg == arena_.get() && !scan_arena) return;
    uint64_t ctl = seg->slots[slot].ctl.load(std::memory_order_acquire);
    if (ctl_state(ctl) != kReleased) return;
    if (seg->slots[slot].ctl.compare_exchange_strong(ctl, slot_ctl(ctl_gen(ctl), 0, kFree))) {
      free_locked(seg, slot, info);
    }
  });
}

void ShmWriter::free_locked(Segment* seg, uint32_t slot, SlotInfo* info) {
  in_use_bytes_ -= info->reserved;
  --in_flight_;
  info->in_use = false;
  info->request_id.clear();
  if (seg != arena_.get()) {
    dedicated_.erase(seg->id);
    return;
  }
  free_.free(info->offset, info->reserved);
  free_slots_.push_back(slot);
}

Result<Block> ShmWriter::allocate_arena_locked(size_t nbytes) {
  if (free_slots_.empty()) return Status::ResourceExhausted("no free slot");
  std::optional<uint64_t> found = free_.allocate(nbytes);
  if (!found) return Status::ResourceExhausted("no free range");
  uint64_t off = *found;
  uint32_t slot = free_slots_.back();
  free_slots_.pop_back();
  SlotInfo& info = slots_[slot];
  info = SlotInfo{0, off, nbytes, info.generation + 1, true, {}};
  if (info.generation == 0) info.generation = 1;
  arena_->slots[slot].ctl.store(slot_ctl(info.generation, 0, kWriting), std::memory_order_relaxed);
  in_use_bytes_ += nbytes;
  ++in_flight_;
  return Block{0, slot, info.generation, off, {arena_->data + off, nbytes}};
}

Result<Block> ShmWriter::allocate_dedicated_locked(size_t nbytes) {
  if (dedicated_.size() >= options_.max_inflight) return Status::ResourceExhausted("in flight");
  uint32_t id = next_segment_id_;
  next_segment_id_ = next_segment_id_ == UINT32_MAX ? 1 : next_segment_id_ + 1;
  auto seg = create_segment(producer_id_, id, 1, nbytes);
  if (!seg.ok()) return seg.status();
  Dedicated d{std::move(*seg), SlotInfo{id, 0, nbytes, 1, true, {}}};
  d.seg->slots[0].ctl.store(slot_ctl(1, 0, kWriting), std::memory_order_relaxed);
  std::byte* data = d.seg->data;
  dedicated_.emplace(id, std::move(d));
  in_use_bytes_ += nbytes;
  ++in_flight_;
  return Block{id, 0, 1, 0, {data, nbytes}};
}

Result<Block> ShmWriter::try_allocate_locked(size_t nbytes, bool* retry) {
  *retry = false;
  OMNICONN_RETURN_IF_ERROR(ensure_started_locked());
  if (nbytes > options_.arena_bytes) {
    reclaim_locked(false);
    auto b = allocate_dedicated_locked(nbytes);
    *retry = !b.ok() && b.status().message() == "in flight";
    return b;
  }
  if (!arena_) OMNICONN_RETURN_IF_ERROR(create_arena_locked());
  reclaim_locked(false);
  auto b = allocate_arena_locked(nbytes);
  if (b.ok()) return b;
  reclaim_locked(true);
  b = allocate_arena_locked(nbytes);
  *retry = !b.ok();
  return b;
}

void ShmWriter::wait_for_release(SegmentHeader* h, uint32_t seen, Deadline deadline) {
  auto slice = std::chrono::nanoseconds(std::chrono::milliseconds(2));
  auto left = deadline - Clock::now();
  if (left < slice) slice = std::chrono::duration_cast<std::chrono::nanoseconds>(left);
  if (slice.count() <= 0) return;
  if (h == nullptr) {
    std::this_thread::sleep_for(slice);
    return;
  }
  h->writer_waiting.fetch_add(1, std::memory_order_seq_cst);
  uint32_t seq = h->release_seq.load(std::memory_order_seq_cst);
  if (seq == seen) futex_wait(&h->release_seq, seq, slice);
  h->writer_waiting.fetch_sub(1, std::memory_order_seq_cst);
}

Result<Block> ShmWriter::allocate(size_t nbytes, Deadline deadline) {
  if (nbytes == 0 || nbytes > options_.max_payload_bytes) {
    return Status::InvalidArgument("payload of " + std::to_string(nbytes) + " bytes: must be 1.." +
                                   std::to_string(options_.max_payload_bytes) +
                                   " bytes (extra.max_payload_bytes)");
  }
  size_t want = round_up(nbytes, kAlign);
  auto start = Clock::now();
  for (;;) {
    SegmentHeader* arena_header = nullptr;
    uint32_t seen = 0;
    {
      std::lock_guard lock(mu_);
      bool retry = false;
      auto b = try_allocate_locked(want, &retry);
      if (b.ok()) {
        b->bytes = b->bytes.first(nbytes);
        return b;
      }
      if (!retry) return b.status();
      if (Clock::now() >= deadline) {
        auto waited = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start);
        return Status::ResourceExhausted(
            "shared-memory arena full: " + std::to_string(nbytes) + " bytes requested, " +
            std::to_string(in_use_bytes_) + " bytes held by " + std::to_string(in_flight_) +
            " payloads not yet released by their readers (arena " +
            std::to_string(options_.arena_bytes) + " bytes, max_inflight " +
            std::to_string(options_.max_inflight) + "); waited " + std::to_string(waited.count()) +
            " ms");
      }
      if (arena_) arena_header = arena_->header;
      seen = last_release_seq_;
    }
    wait_for_release(arena_header, seen, deadline);
  }
}

std::pair<Segment*, ShmWriter::SlotInfo*> ShmWriter::lookup_locked(uint32_t segment_id,
                                                                   uint32_t slot) {
  if (segment_id == 0) {
    if (!arena_ || slot >= slots_.size()) return {nullptr, nullptr};
    return {arena_.get(), &slots_[slot]};
  }
  auto it = dedicated_.find(segment_id);
  if (it == dedicated_.end() || slot != 0) return {nullptr, nullptr};
  return {it->second.seg.get(), &it->second.info};
}

Result<ShmRef> ShmWriter::publish(const Block& block, size_t size, uint64_t header_checksum,
                                  const std::string& request_id) {
  std::lock_guard lock(mu_);
  auto [seg, info] = lookup_locked(block.segment_id, block.slot);
  if (seg == nullptr || !info->in_use || info->generation != block.generation) {
    return Status::InvalidArgument("loan is no longer valid");
  }
  Slot& s = seg->slots[block.slot];
  s.offset = block.offset;
  s.size = size;
  s.header_checksum = header_checksum;
  info->request_id = request_id;
  s.ctl.store(slot_ctl(block.generation, 0, kPublished), std::memory_order_release);
  return ShmRef{producer_id_, block.segment_id, block.slot, block.generation, block.offset,
                size,         header_checksum};
}

void ShmWriter::abandon(const Block& block) {
  std::lock_guard lock(mu_);
  auto [seg, info] = lookup_locked(block.segment_id, block.slot);
  if (seg == nullptr || !info->in_use || info->generation != block.generation) return;
  seg->slots[block.slot].ctl.store(slot_ctl(block.generation, 0, kFree));
  free_locked(seg, block.slot, info);
}

bool ShmWriter::unpublish(const ShmRef& ref) {
  std::lock_guard lock(mu_);
  auto [seg, info] = lookup_locked(ref.segment_id, ref.slot);
  if (seg == nullptr || !info->in_use || info->generation != ref.generation) return false;
  uint64_t expect = slot_ctl(ref.generation, 0, kPublished);
  if (!seg->slots[ref.slot].ctl.compare_exchange_strong(expect,
                                                        slot_ctl(ref.generation, 0, kFree))) {
    return false;
  }
  free_locked(seg, ref.slot, info);
  return true;
}

size_t ShmWriter::cleanup(std::string_view request_id) {
  std::lock_guard lock(mu_);
  size_t freed = 0;
  for_each_in_use_locked([&](Segment* seg, uint32_t slot, SlotInfo* info) {
    if (info->request_id != request_id) return;
    uint64_t ctl = seg->slots[slot].ctl.load(std::memory_order_acquire);
    if (ctl_state(ctl) != kPublished) return;
    if (seg->slots[slot].ctl.compare_exchange_strong(ctl, slot_ctl(ctl_gen(ctl), 0, kFree))) {
      free_locked(seg, slot, info);
      ++freed;
    }
  });
  return freed;
}

void ShmWriter::release_dead_reader(uint32_t reader_id) {
  std::lock_guard lock(mu_);
  std::vector<SegmentHeader*> wake;
  for_each_in_use_locked([&](Segment* seg, uint32_t slot, SlotInfo*) {
    uint64_t ctl = seg->slots[slot].ctl.load(std::memory_order_acquire);
    if (ctl_state(ctl) != kReading || ctl_holder(ctl) != reader_id) return;
    if (seg->slots[slot].ctl.compare_exchange_strong(ctl, slot_ctl(ctl_gen(ctl), 0, kReleased))) {
      ++reclaimed_;
      wake.push_back(seg->header);
    }
  });
  for (SegmentHeader* h : wake) bump_release(h);
}

int ShmWriter::segment_fd_for_reader(uint32_t id, uint64_t* size) {
  std::lock_guard lock(mu_);
  Segment* seg = nullptr;
  if (id == 0) {
    seg = arena_.get();
  } else if (auto it = dedicated_.find(id); it != dedicated_.end()) {
    seg = it->second.seg.get();
  }
  if (seg == nullptr) return -1;
  *size = seg->map.size();
  return ::dup(seg->fd.get());
}

WriterStats ShmWriter::stats() {
  std::lock_guard lock(mu_);
  reclaim_locked(false);
  WriterStats s;
  s.capacity_bytes = arena_ ? arena_->header->data_size : 0;
  for (const auto& [id, d] : dedicated_) s.capacity_bytes += d.seg->header->data_size;
  s.in_use_bytes = in_use_bytes_;
  s.in_flight = in_flight_;
  s.reclaimed = reclaimed_;
  return s;
}

Status ShmWriter::health() {
  std::lock_guard lock(mu_);
  return fatal_;
}

}  // namespace omniconn::shm
