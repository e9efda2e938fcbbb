#include "shm/shm_ring.h"

#include <cstring>
#include <thread>

namespace omniconn::shm {

namespace {

constexpr auto kSleepSlice = std::chrono::milliseconds(20);

std::string edge_name(std::string_view from, std::string_view to) {
  return std::string(from) + "->" + std::string(to);
}

std::chrono::nanoseconds slice_until(Deadline deadline, std::chrono::nanoseconds max) {
  auto left = deadline - Clock::now();
  if (left <= Clock::duration::zero()) return std::chrono::nanoseconds(0);
  return std::min<std::chrono::nanoseconds>(max, left);
}

void put_header(std::byte* at, uint32_t len, uint32_t kind) {
  std::memcpy(at, &len, 4);
  std::memcpy(at + 4, &kind, 4);
}

}  // namespace

Result<std::unique_ptr<EdgeSender>> EdgeSender::create(ShmServer& server, const ShmOptions& options,
                                                       uint64_t producer_id, std::string_view from,
                                                       std::string_view to) {
  auto s = std::make_unique<EdgeSender>();
  s->edge_ = edge_name(from, to);
  size_t total = kRingDataOffset + options.ring_bytes;
  auto fd = create_memfd("omniconn-ring", total);
  if (!fd.ok()) return fd.status();
  auto map = map_fd(fd->get(), 0, total, true, true);
  if (!map.ok()) return map.status();
  s->fd_ = std::move(*fd);
  s->map_ = std::move(*map);
  s->ring_ = new (s->map_.data()) RingHeader{};
  s->ring_->magic = kRingMagic;
  s->ring_->capacity = static_cast<uint32_t>(options.ring_bytes);
  s->ring_->producer_id = producer_id;
  s->data_ = s->map_.data() + kRingDataOffset;
  s->spin_us_ = options.spin_us;
  bool in_use = false;
  Status st =
      server.serve_edge(edge_socket_name(options.name_space, from, to), s->fd_.get(), &in_use);
  if (in_use) {
    return Status::Unavailable("another process already writes on edge " + s->edge_ +
                               " in namespace '" + options.name_space +
                               "' (one writer per edge; give pipelines distinct namespaces)");
  }
  if (!st.ok()) return st.WithContext("edge " + s->edge_);
  return s;
}

Result<RingRecord> parse_ring_record(const std::byte* data, uint64_t cap, uint64_t head,
                                     uint64_t tail) {
  RingRecord r;
  if (head == tail) return r;
  if (cap < kRecordHeader || cap % 8 != 0 || head - tail > cap || tail % 8 != 0) {
    return Status::Corrupt("control ring indices torn");
  }
  r.pos = tail % cap;
  uint32_t kind;
  std::memcpy(&r.len, data + r.pos, 4);
  std::memcpy(&kind, data + r.pos + 4, 4);
  r.size = kRecordHeader + round_up(r.len, 8);
  if (r.size > cap - r.pos || r.size > head - tail) {
    return Status::Corrupt("control ring record torn");
  }
  if (kind == kRecordPad) {
    r.kind = RingRecord::kPad;
  } else if (kind == kRecordDescriptor) {
    r.kind = RingRecord::kDescriptor;
  } else {
    return Status::Corrupt("control ring record of unknown kind");
  }
  return r;
}

uint64_t ring_space_needed(uint64_t cap, uint64_t head, size_t body_size) {
  const uint64_t need = kRecordHeader + round_up(body_size, 8);
  const uint64_t contig = cap - head % cap;
  return need > contig ? contig + need : need;
}

uint64_t append_ring_record(std::byte* data, uint64_t cap, uint64_t head,
                            std::span<const std::byte> body) {
  const uint64_t need = kRecordHeader + round_up(body.size(), 8);
  const uint64_t contig = cap - head % cap;
  if (need > contig) {
    put_header(data + head % cap, static_cast<uint32_t>(contig - kRecordHeader), kRecordPad);
    head += contig;
  }
  std::byte* at = data + head % cap;
  put_header(at, static_cast<uint32_t>(body.size()), kRecordDescriptor);
  std::memcpy(at + kRecordHeader, body.data(), body.size());
  return head + need;
}

bool EdgeSender::spin_for_space(uint64_t head, uint64_t required, Deadline deadline) const {
  const uint64_t cap = ring_->capacity;
  const auto end = std::min(deadline, Clock::now() + std::chrono::microseconds(spin_us_));
  do {
    for (int i = 0; i < 64; ++i) {
      if (cap - (head - ring_->tail.load(std::memory_order_acquire)) >= required) return true;
    }
  } while (Clock::now() < end);
  return false;
}

Status EdgeSender::push(std::string_view descriptor, Deadline deadline) {
  const auto body = std::as_bytes(std::span(descriptor.data(), descriptor.size()));
  std::lock_guard lock(mu_);
  const uint64_t cap = ring_->capacity;
  if (kRecordHeader + round_up(body.size(), 8) > cap / 2) {
    return Status::InvalidArgument("record larger than half the control ring");
  }
  uint64_t head = ring_->head.load(std::memory_order_relaxed);
  const uint64_t required = ring_space_needed(cap, head, body.size());
  bool spun = false;
  for (;;) {
    uint64_t tail = ring_->tail.load(std::memory_order_acquire);
    if (cap - (head - tail) >= required) break;
    if (Clock::now() >= deadline) {
      return Status::ResourceExhausted("control ring of edge " + edge_ +
                                       " is full: its reader is not keeping up");
    }
    if (!spun) {
      spun = true;
      if (spin_for_space(head, required, deadline)) continue;
    }
    ring_->writer_waiting.store(1, std::memory_order_seq_cst);
    uint32_t seq = ring_->tail_seq.load(std::memory_order_seq_cst);
    if (ring_->tail.load(std::memory_order_seq_cst) == tail) {
      futex_wait(&ring_->tail_seq, seq, slice_until(deadline, std::chrono::milliseconds(2)));
    }
    ring_->writer_waiting.store(0, std::memory_order_relaxed);
  }
  head = append_ring_record(data_, cap, head, body);
  ring_->head.store(head, std::memory_order_seq_cst);
  ring_->head_seq.fetch_add(1, std::memory_order_seq_cst);
  if (ring_->reader_waiting.load(std::memory_order_seq_cst) != 0) {
    futex_wake_all(&ring_->head_seq);
  }
  return Status::Ok();
}

Result<std::unique_ptr<EdgeReceiver>> EdgeReceiver::open(const ShmOptions& options,
                                                         std::string_view from, std::string_view to,
                                                         Deadline deadline) {
  auto link = open_link(edge_socket_name(options.name_space, from, to), deadline);
  if (!link.ok() && link.status().code() == StatusCode::kNotFound) {
    return Status::NotFound("no writer on edge " + edge_name(from, to) + " (namespace '" +
                            options.name_space + "')");
  }
  if (!link.ok()) return link.status();
  auto fd = request_ring(**link, deadline);
  if (!fd.ok()) return fd.status();
  auto size = fd_size(fd->get());
  if (!size.ok()) return size.status();
  if (*size <= kRingDataOffset) return Status::Corrupt("control ring too small");
  auto map = map_fd(fd->get(), 0, *size, true, true);
  if (!map.ok()) return map.status();
  auto r = std::make_unique<EdgeReceiver>();
  r->edge_ = edge_name(from, to);
  r->link_ = std::move(*link);
  r->fd_ = std::move(*fd);
  r->map_ = std::move(*map);
  r->ring_ = reinterpret_cast<RingHeader*>(r->map_.data());
  r->data_ = r->map_.data() + kRingDataOffset;
  r->spin_us_ = options.spin_us;
  if (r->ring_->magic != kRingMagic || r->ring_->capacity % 8 != 0 ||
      r->ring_->capacity != *size - kRingDataOffset) {
    return Status::Corrupt("control ring header of edge " + r->edge_ + " is invalid");
  }
  r->capacity_ = r->ring_->capacity;  // checked once; the shared copy is never trusted again
  return r;
}

bool EdgeReceiver::empty() const {
  return ring_->head.load(std::memory_order_acquire) == ring_->tail.load(std::memory_order_relaxed);
}

Result<bool> EdgeReceiver::peek(std::string* out, Deadline) {
  uint64_t tail = ring_->tail.load(std::memory_order_relaxed);
  for (;;) {
    uint64_t head = ring_->head.load(std::memory_order_acquire);
    auto r = parse_ring_record(data_, capacity_, head, tail);
    if (!r.ok()) return r.status();
    if (r->kind == RingRecord::kNone) return false;
    tail += r->size;
    if (r->kind == RingRecord::kPad) {
      ring_->tail.store(tail, std::memory_order_release);
      continue;
    }
    out->assign(reinterpret_cast<const char*>(data_ + r->pos + kRecordHeader), r->len);
    next_tail_ = tail;
    return true;
  }
}

void EdgeReceiver::consume() {
  ring_->tail.store(next_tail_, std::memory_order_seq_cst);
  ring_->tail_seq.fetch_add(1, std::memory_order_seq_cst);
  if (ring_->writer_waiting.load(std::memory_order_seq_cst) != 0) {
    futex_wake_all(&ring_->tail_seq);
  }
}

Status EdgeReceiver::wait(Deadline deadline) {
  auto spin_end = std::min(deadline, Clock::now() + std::chrono::microseconds(spin_us_));
  while (Clock::now() < spin_end) {
    for (int i = 0; i < 64; ++i) {
      if (!empty()) return Status::Ok();
    }
  }
  while (empty()) {
    if (link_->hung_up()) {
      if (!empty()) return Status::Ok();
      return Status::Unavailable("the writer of edge " + edge_ + " (pid " +
                                 std::to_string(link_->pid) + ") has exited");
    }
    auto slice = slice_until(deadline, kSleepSlice);
    if (slice.count() == 0) return Status::Timeout("nothing arrived on edge " + edge_);
    ring_->reader_waiting.store(1, std::memory_order_seq_cst);
    uint32_t seq = ring_->head_seq.load(std::memory_order_seq_cst);
    if (empty()) futex_wait(&ring_->head_seq, seq, slice);
    ring_->reader_waiting.store(0, std::memory_order_relaxed);
  }
  return Status::Ok();
}

}  // namespace omniconn::shm
