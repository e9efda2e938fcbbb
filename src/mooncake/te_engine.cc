#include "mooncake/te_engine.h"

#include <algorithm>
#include <thread>
#include <vector>

namespace omniconn::mooncake {

namespace {

const char* status_name(int s) {
  switch (s) {
    case kTeInvalid:
      return "INVALID";
    case kTeCanceled:
      return "CANCELED";
    case kTeTimeout:
      return "TIMEOUT";
    case kTeFailed:
      return "FAILED";
    default:
      return "unknown";
  }
}

}  // namespace

Result<std::unique_ptr<TeEngine>> TeEngine::open(std::shared_ptr<const TeApi> api,
                                                 const std::string& host,
                                                 const std::string& protocol) {
  engine_t e = api->create("P2PHANDSHAKE", host.c_str(), host.c_str(), 0, 0);
  if (e == nullptr) {
    return Status::Unavailable("transfer engine: cannot start on '" + host +
                               "' (is it an address of this host? Mooncake's log says more)");
  }
  if (api->install_transport(e, protocol.c_str(), nullptr) == nullptr) {
    api->destroy(e);
    return Status::Unavailable("transfer engine: cannot install the '" + protocol +
                               "' transport (rdma needs an RDMA device; tcp always works)");
  }
  char buf[256] = {};
  api->local_ip_and_port(e, buf, sizeof buf);
  return std::unique_ptr<TeEngine>(new TeEngine(std::move(api), e, buf));
}

TeEngine::TeEngine(std::shared_ptr<const TeApi> api, engine_t engine, std::string name)
    : api_(std::move(api)), engine_(engine), name_(std::move(name)) {}

TeEngine::~TeEngine() {
  for (auto& [peer, id] : segments_) api_->close_segment(engine_, id);
  for (void* addr : registered_) api_->unregister_memory(engine_, addr);
  api_->destroy(engine_);
}

Status TeEngine::register_memory(void* addr, size_t length) {
  int rc = api_->register_memory(engine_, addr, length, "cpu:0", 1);
  if (rc != 0) {
    return Status::Unavailable("transfer engine: cannot register " + std::to_string(length) +
                               " bytes of memory (rc " + std::to_string(rc) + ")");
  }
  registered_.push_back(addr);
  return Status::Ok();
}

Result<int32_t> TeEngine::open_segment(const std::string& peer) {
  for (auto& [name, id] : segments_) {
    if (name == peer) return id;
  }
  int32_t id = api_->open_segment(engine_, peer.c_str());
  if (id < 0) {
    return Status::Unavailable("transfer engine: cannot open the segment of '" + peer + "' (rc " +
                               std::to_string(id) + "): is its engine running?");
  }
  segments_.emplace_back(peer, id);
  return id;
}

Status TeEngine::transfer(int opcode, int32_t segment, void* local, uint64_t remote, size_t length,
                          Deadline deadline, size_t piece) {
  size_t count = std::max<size_t>(1, (length + piece - 1) / piece);
  std::vector<TeRequest> reqs(count);
  for (size_t i = 0; i < count; ++i) {
    size_t off = i * piece;
    reqs[i] = TeRequest{opcode, static_cast<char*>(local) + off, segment, remote + off,
                        std::min(piece, length - std::min(off, length))};
  }
  std::string what = std::string(opcode == kTeWrite ? "write" : "read") + " of " +
                     std::to_string(length) + " bytes";
  uint64_t batch = api_->allocate_batch(engine_, count);
  if (batch == kInvalidBatch) return Status::ResourceExhausted("transfer engine: no batch id");
  int rc = api_->submit(engine_, batch, reqs.data(), count);
  Status s = rc == 0 ? wait_all(batch, count, deadline, what)
                     : Status::Unavailable("transfer engine: " + what + " not submitted (rc " +
                                           std::to_string(rc) + ")");
  api_->free_batch(engine_, batch);  // refused while a task is pending: then Mooncake keeps it
  return s;
}

Status TeEngine::wait_all(uint64_t batch, size_t count, Deadline deadline,
                          const std::string& what) {
  for (size_t task = 0, spins = 0; task < count;) {
    TeStatusWord st{};
    api_->status(engine_, batch, task, &st);
    if (st.status == kTeCompleted) {
      ++task;
      continue;
    }
    if (st.status != kTeWaiting && st.status != kTePending) {
      return Status::Unavailable("transfer engine: " + what + ": piece " + std::to_string(task) +
                                 " " + status_name(st.status));
    }
    if (Clock::now() >= deadline) {
      return Status::Timeout("transfer engine: " + what + " not done by the deadline");
    }
    if (++spins > 64) std::this_thread::yield();
  }
  return Status::Ok();
}

}  // namespace omniconn::mooncake
