#include "shm/shm_reader.h"

#include <unistd.h>

#include <cstring>

namespace omniconn::shm {

namespace {

std::span<std::byte> as_writable(void* p, size_t n) {
  return {static_cast<std::byte*>(p), n};
}

// A request whose reply missed the deadline leaves that reply in the socket: it is read and
// dropped (with any fd it carries) before the next request, so the link stays in step.
Result<Reply> roundtrip(Link& link, Request req, Fd* fd, Deadline deadline) {
  Reply reply{};
  while (link.stale_replies > 0) {
    Fd discard;
    auto n = recv_msg(link.sock.get(), as_writable(&reply, sizeof reply), &discard, deadline);
    if (!n.ok()) return n.status();
    --link.stale_replies;
  }
  OMNICONN_RETURN_IF_ERROR(
      send_msg(link.sock.get(), {reinterpret_cast<const std::byte*>(&req), sizeof req}));
  auto n = recv_msg(link.sock.get(), as_writable(&reply, sizeof reply), fd, deadline);
  if (!n.ok() && n.status().code() == StatusCode::kTimeout) ++link.stale_replies;
  if (!n.ok()) return n.status();
  if (*n != sizeof reply || reply.arg != req.arg) return Status::Corrupt("bad reply from writer");
  return reply;
}

template <typename T>
T field_at(const std::byte* p, size_t off) {
  T v;
  std::memcpy(&v, p + off, sizeof v);
  return v;
}

// The arena (mapped once per writer, reused) is pre-faulted; a dedicated segment (one payload)
// is not, so that get costs the same at any size: its pages fault in as the reader touches them.
Result<std::shared_ptr<SegmentView>> map_segment(Fd fd, uint64_t size, bool populate) {
  std::byte hdr[sizeof(SegmentHeader)];
  if (::pread(fd.get(), hdr, sizeof hdr, 0) != static_cast<ssize_t>(sizeof hdr)) {
    return Status::Corrupt("segment header unreadable");
  }
  auto v = std::make_shared<SegmentView>();
  v->slot_count = field_at<uint32_t>(hdr, offsetof(SegmentHeader, slot_count));
  uint64_t data_offset = field_at<uint64_t>(hdr, offsetof(SegmentHeader, data_offset));
  v->data_size = field_at<uint64_t>(hdr, offsetof(SegmentHeader, data_size));
  auto actual = fd_size(fd.get());
  if (!actual.ok()) return actual.status();
  if (field_at<uint64_t>(hdr, 0) != kSegmentMagic || v->slot_count == 0 ||
      data_offset != segment_data_offset(v->slot_count) || data_offset > size ||
      v->data_size != size - data_offset || *actual != size) {
    return Status::Corrupt("segment header does not describe the segment");
  }
  auto ctl = map_fd(fd.get(), 0, data_offset, /*writable=*/true, /*populate=*/false);
  if (!ctl.ok()) return ctl.status();
  auto data = map_fd(fd.get(), data_offset, v->data_size, /*writable=*/false, populate);
  if (!data.ok()) return data.status();
  v->ctl_map = std::move(*ctl);
  v->data_map = std::move(*data);
  v->header = reinterpret_cast<SegmentHeader*>(v->ctl_map.data());
  v->slots = reinterpret_cast<Slot*>(v->ctl_map.data() + kSlotTableOffset);
  v->data = v->data_map.data();
  v->data_offset = data_offset;
  v->fd = std::move(fd);
  return v;
}

Result<std::shared_ptr<SegmentView>> request_segment(Link& link, uint32_t id, Deadline deadline) {
  Fd fd;
  auto reply = roundtrip(link, Request{kOpMapSegment, id}, &fd, deadline);
  if (!reply.ok()) return reply.status();
  if (reply->status != 0 || !fd.valid()) {
    return Status::NotFound("segment " + std::to_string(id) +
                            " no longer exists (payload released or cleaned up)");
  }
  return map_segment(std::move(fd), reply->size, /*populate=*/id == 0);
}

Result<std::shared_ptr<SegmentView>> segment_for(Link& link, uint32_t id, Deadline deadline) {
  std::lock_guard lock(link.mu);
  if (id == 0) {
    if (!link.arena) {
      auto v = request_segment(link, 0, deadline);
      if (!v.ok()) return v.status();
      link.arena = *v;
    }
    return link.arena;
  }
  std::erase_if(link.dedicated, [](const auto& e) { return e.second.expired(); });
  if (auto it = link.dedicated.find(id); it != link.dedicated.end()) return it->second.lock();
  auto v = request_segment(link, id, deadline);
  if (v.ok()) link.dedicated[id] = *v;
  return v;
}

// Holds a slot in READING; gives it back when the last view is destroyed.
struct SlotLease {
  SlotLease(std::shared_ptr<SegmentView> s, uint32_t i, uint64_t r)
      : seg(std::move(s)), slot(i), reading(r) {}
  SlotLease(const SlotLease&) = delete;
  SlotLease& operator=(const SlotLease&) = delete;
  std::shared_ptr<SegmentView> seg;
  uint32_t slot;
  uint64_t reading;
  ~SlotLease() {
    uint64_t expect = reading;
    if (seg->slots[slot].ctl.compare_exchange_strong(
            expect, slot_ctl(ctl_gen(reading), 0, kReleased), std::memory_order_acq_rel)) {
      bump_release(seg->header);
    }
  }
};

Status check_ref_bounds(const SegmentView& seg, const ShmRef& ref) {
  if (ref.slot >= seg.slot_count) {
    return Status::Corrupt("descriptor: slot " + std::to_string(ref.slot) + " out of range (" +
                           std::to_string(seg.slot_count) + " slots)");
  }
  if (ref.size > seg.data_size || ref.offset > seg.data_size - ref.size || ref.offset % 64 != 0) {
    return Status::Corrupt("descriptor: payload [offset " + std::to_string(ref.offset) + ", " +
                           std::to_string(ref.size) + " bytes] outside the segment's " +
                           std::to_string(seg.data_size) + " bytes");
  }
  return Status::Ok();
}

// A writable view: the slot's lease and a copy-on-write mapping of the payload's pages. The
// mapping goes with the view, so no written page outlives it into a later payload's range.
Result<PayloadView> writable_view(const SegmentView& v, const DecodedDescriptor& d,
                                  std::shared_ptr<SlotLease> lease) {
  std::byte* at = nullptr;
  auto m = map_private(v.fd.get(), v.data_offset + d.ref.offset, d.ref.size, &at);
  if (!m.ok()) return m.status();
  struct Keep {
    std::shared_ptr<SlotLease> lease;
    Mapping map;
  };
  auto keep = std::make_shared<Keep>(Keep{std::move(lease), std::move(*m)});
  return PayloadView::make(d.key, {at, d.ref.size}, std::move(keep));
}

}  // namespace

Result<std::shared_ptr<Link>> open_link(const std::string& socket_name, Deadline deadline) {
  auto fd = connect_abstract(socket_name);
  if (!fd.ok()) return fd.status();
  auto same = peer_is_same_user(fd->get());
  if (!same.ok()) return same.status();
  if (!*same) return Status::Unavailable("refused: the writer process runs as another user");
  auto link = std::make_shared<Link>();
  link->sock = std::move(*fd);
  Reply hello{};
  auto n = recv_msg(link->sock.get(), as_writable(&hello, sizeof hello), nullptr, deadline);
  if (!n.ok()) return n.status().WithContext("hello from writer");
  if (*n != sizeof hello || hello.status != 0) return Status::Corrupt("bad hello from writer");
  link->reader_id = hello.reader_id;
  link->pid = hello.pid;
  return link;
}

Result<Fd> request_ring(Link& link, Deadline deadline) {
  std::lock_guard lock(link.mu);
  Fd fd;
  auto reply = roundtrip(link, Request{kOpRing, 0}, &fd, deadline);
  if (!reply.ok()) return reply.status();
  if (reply->status != 0 || !fd.valid()) return Status::Unavailable("writer has no ring");
  return fd;
}

Result<PayloadView> take_payload(Link& link, const DecodedDescriptor& d, Deadline deadline,
                                 bool writable) {
  const ShmRef& ref = d.ref;
  auto seg = segment_for(link, ref.segment_id, deadline);
  if (!seg.ok()) return seg.status().WithContext("payload " + d.key.str());
  SegmentView& v = **seg;
  OMNICONN_RETURN_IF_ERROR(check_ref_bounds(v, ref));
  Slot& slot = v.slots[ref.slot];
  uint64_t expect = slot_ctl(ref.generation, 0, kPublished);
  uint64_t reading = slot_ctl(ref.generation, link.reader_id, kReading);
  if (!slot.ctl.compare_exchange_strong(expect, reading, std::memory_order_acq_rel)) {
    return Status::NotFound("payload " + d.key.str() +
                            ": already taken, cleaned up or never published (stale descriptor)");
  }
  if (slot.offset != ref.offset || slot.size != ref.size ||
      slot.header_checksum != ref.header_checksum) {
    uint64_t back = reading;
    slot.ctl.compare_exchange_strong(back, slot_ctl(ref.generation, 0, kPublished));
    return Status::Corrupt("descriptor for " + d.key.str() + " does not match its slot");
  }
  auto lease = std::make_shared<SlotLease>(*seg, ref.slot, reading);
  if (writable) return writable_view(v, d, std::move(lease));
  return PayloadView::make(d.key, {v.data + ref.offset, ref.size}, std::move(lease));
}

Result<std::shared_ptr<Link>> LinkTable::get(uint64_t producer_id, Deadline deadline) {
  std::lock_guard lock(mu_);
  // A writer id is never reused, so a cached link stays right: if its writer died, requests
  // on it fail with Unavailable, and payloads already mapped stay readable.
  auto it = links_.find(producer_id);
  if (it != links_.end()) return it->second;
  auto link = open_link(producer_socket_name(producer_id), deadline);
  if (!link.ok()) {
    if (link.status().code() == StatusCode::kNotFound) {
      return Status::Unavailable(
          "the writer process of this payload is gone (or the descriptor "
          "names a writer that never existed)");
    }
    return link.status();
  }
  links_.emplace(producer_id, *link);
  return *link;
}

}  // namespace omniconn::shm
