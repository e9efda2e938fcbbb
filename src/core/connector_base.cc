#include "omniconn/connector_base.h"

#include <algorithm>
#include <thread>

namespace omniconn {

namespace {

// A recv consumes a descriptor once its payload was taken or can never be: gone (cleaned up),
// bad, or not ours. Anything else (timeout, writer unreachable, no space) leaves it queued.
bool settles(StatusCode code) {
  return code == StatusCode::kOk || code == StatusCode::kNotFound || code == StatusCode::kCorrupt ||
         code == StatusCode::kInvalidArgument;
}

int64_t elapsed_ns(Clock::time_point t0) {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now() - t0).count();
}

}  // namespace

ConnectorBase::~ConnectorBase() {
  close_queues();
}

void ConnectorBase::close_queues() {
  std::lock_guard lock(edges_mu_);
  inboxes_.clear();
  senders_.clear();
}

Status ConnectorBase::counted(Status st) {
  if (!st.ok()) c_.by_code[static_cast<size_t>(st.code())].fetch_add(1, std::memory_order_relaxed);
  if (st.code() == StatusCode::kTimeout) {
    c_.timeouts.fetch_add(1, std::memory_order_relaxed);
  } else if (!st.ok()) {
    c_.errors.fetch_add(1, std::memory_order_relaxed);
  }
  return st;
}

void ConnectorBase::count_out(const Published& p, std::atomic<uint64_t>* calls,
                              Clock::time_point t0) {
  c_.put_latency.observe(elapsed_ns(t0));
  calls->fetch_add(1, std::memory_order_relaxed);
  c_.bytes_out.fetch_add(p.size, std::memory_order_relaxed);
  if (p.is_inline) c_.inline_payloads.fetch_add(1, std::memory_order_relaxed);
}

Result<PayloadView> ConnectorBase::count_in(Result<PayloadView> view, Clock::time_point t0) {
  if (!view.ok()) return counted(view.status());
  c_.get_latency.observe(elapsed_ns(t0));
  c_.gets.fetch_add(1, std::memory_order_relaxed);
  c_.bytes_in.fetch_add(view->bytes().size(), std::memory_order_relaxed);
  return view;
}

// Descriptor mode's payloads are findable by key too; one that cannot be is withdrawn.
Result<Descriptor> ConnectorBase::indexed(const PayloadKey& key, Result<Published> p,
                                          Clock::time_point t0) {
  if (!p.ok()) return counted(p.status());
  if (Status st = index(key, &*p); !st.ok()) {
    withdraw(p->descriptor);
    return counted(st);
  }
  count_out(*p, &c_.puts, t0);
  return Descriptor{std::move(p->descriptor)};
}

Result<Descriptor> ConnectorBase::put(const PayloadKey& key, const PayloadBuilder& payload,
                                      Deadline deadline) {
  auto t0 = Clock::now();
  return indexed(key, publish(key, payload, deadline), t0);
}

Result<Descriptor> ConnectorBase::commit(Loan loan, const PayloadKey& key, Deadline deadline) {
  auto t0 = Clock::now();
  return indexed(key, publish_loan(std::move(loan), key, deadline), t0);
}

Status ConnectorBase::index(const PayloadKey&, Published*) {
  return Status::Ok();
}

Result<PayloadView> ConnectorBase::take_with(std::string_view descriptor, Deadline deadline,
                                             const GetOptions& options) {
  auto view = take(descriptor, deadline, nullptr);
  if (!view.ok() || !options.writable) return view;
  return PayloadView::copy(view->key(), view->bytes());
}

Result<PayloadView> ConnectorBase::take_key(const PayloadKey&, Deadline, const GetOptions&) {
  return Status::InvalidArgument(std::string(type_name()) +
                                 " cannot look payloads up by key: pass the put's descriptor");
}

Result<Loan> ConnectorBase::loan(size_t nbytes, Deadline deadline) {
  auto l = lend(nbytes, deadline);
  if (!l.ok()) return counted(l.status());
  return l;
}

Result<PayloadView> ConnectorBase::get(const Descriptor& descriptor, Deadline deadline) {
  auto t0 = Clock::now();
  return count_in(take_with(descriptor.bytes, deadline, GetOptions{}), t0);
}

Result<PayloadView> ConnectorBase::get(const Descriptor& descriptor, Deadline deadline,
                                       const GetOptions& options) {
  auto t0 = Clock::now();
  return count_in(take_with(descriptor.bytes, deadline, options), t0);
}

Result<PayloadView> ConnectorBase::get(const PayloadKey& key, Deadline deadline,
                                       const GetOptions& options) {
  auto t0 = Clock::now();
  return count_in(take_key(key, deadline, options), t0);
}

Metrics ConnectorBase::metrics() const {
  Metrics m;
  m.puts = c_.puts.load(std::memory_order_relaxed);
  m.sends = c_.sends.load(std::memory_order_relaxed);
  m.gets = c_.gets.load(std::memory_order_relaxed);
  m.inline_payloads = c_.inline_payloads.load(std::memory_order_relaxed);
  m.bytes_out = c_.bytes_out.load(std::memory_order_relaxed);
  m.bytes_in = c_.bytes_in.load(std::memory_order_relaxed);
  m.timeouts = c_.timeouts.load(std::memory_order_relaxed);
  m.errors = c_.errors.load(std::memory_order_relaxed);
  for (size_t i = 0; i < kStatusCodeCount; ++i) {
    m.errors_by_code[i] = c_.by_code[i].load(std::memory_order_relaxed);
  }
  m.put_latency = c_.put_latency.snapshot();
  m.get_latency = c_.get_latency.snapshot();
  memory_metrics(&m);
  return m;
}

// ---- channel mode: the writing side -------------------------------------------------------

Result<DescriptorSender*> ConnectorBase::sender(const PayloadKey& key) {
  std::lock_guard lock(edges_mu_);
  auto it = senders_.find(EdgeView(key.from_stage, key.to_stage));
  if (it != senders_.end()) return it->second.get();
  auto s = open_sender(key.from_stage, key.to_stage);
  if (!s.ok()) return s.status();
  return senders_.emplace(EdgeId(key.from_stage, key.to_stage), std::move(*s)).first->second.get();
}

Status ConnectorBase::deliver(const PayloadKey& key, const Published& p, Deadline deadline) {
  auto tx = sender(key);
  Status st = tx.ok() ? (*tx)->push(p.descriptor, deadline) : tx.status();
  if (!st.ok()) withdraw(p.descriptor);  // never delivered: take it back
  return st;
}

Status ConnectorBase::send(const PayloadKey& key, const PayloadBuilder& payload,
                           Deadline deadline) {
  auto t0 = Clock::now();
  auto p = publish(key, payload, deadline);
  if (!p.ok()) return counted(p.status());
  OMNICONN_RETURN_IF_ERROR(counted(deliver(key, *p, deadline)));
  count_out(*p, &c_.sends, t0);
  return Status::Ok();
}

Status ConnectorBase::send_loan(Loan loan, const PayloadKey& key, Deadline deadline) {
  auto t0 = Clock::now();
  auto p = publish_loan(std::move(loan), key, deadline);
  if (!p.ok()) return counted(p.status());
  OMNICONN_RETURN_IF_ERROR(counted(deliver(key, *p, deadline)));
  count_out(*p, &c_.sends, t0);
  return Status::Ok();
}

// ---- channel mode: the reading side -------------------------------------------------------

Result<std::shared_ptr<ConnectorBase::Inbox>> ConnectorBase::inbox(std::string_view from,
                                                                   std::string_view to,
                                                                   Deadline deadline) {
  {
    std::lock_guard lock(edges_mu_);
    auto it = inboxes_.find(EdgeView(from, to));
    if (it != inboxes_.end()) return it->second;
  }
  // Opened without the lock: waiting for one edge's writer must not stall other edges.
  auto backoff = std::chrono::microseconds(200);
  for (;;) {
    auto q = open_receiver(from, to, deadline);
    if (q.ok()) {
      auto in = std::make_shared<Inbox>();
      in->queue = std::move(*q);
      std::lock_guard lock(edges_mu_);
      return inboxes_.try_emplace(EdgeId(from, to), std::move(in)).first->second;
    }
    if (q.status().code() != StatusCode::kNotFound) return q.status();
    auto now = Clock::now();
    if (now >= deadline) return Status::Timeout(q.status().message() + " before the deadline");
    std::this_thread::sleep_for(std::min<Clock::duration>(backoff, deadline - now));
    backoff = std::min(backoff * 2, std::chrono::microseconds(20000));
  }
}

// *t0: when a payload was found there (after a wait, the moment the wait ended).
Result<PayloadView> ConnectorBase::next_from(Inbox& in, Deadline deadline, bool* writer_gone,
                                             Clock::time_point* t0) {
  std::lock_guard lock(in.mu);
  std::string desc;
  for (;;) {
    auto got = in.queue->peek(&desc, deadline);
    if (!got.ok()) return got.status();
    if (!*got) {
      Status st = in.queue->wait(deadline);
      *writer_gone = st.code() == StatusCode::kUnavailable;
      OMNICONN_RETURN_IF_ERROR(st);
      *t0 = Clock::now();
      continue;
    }
    auto view = take(desc, deadline, in.queue.get());
    StatusCode code = view.ok() ? StatusCode::kOk : view.status().code();
    if (settles(code)) in.queue->consume();
    if (code != StatusCode::kNotFound) return view;  // NotFound: cleaned up, skip it
  }
}

void ConnectorBase::drop_inbox(std::string_view from, std::string_view to,
                               const std::shared_ptr<Inbox>& in) {
  std::lock_guard lock(edges_mu_);
  auto it = inboxes_.find(EdgeView(from, to));
  if (it != inboxes_.end() && it->second == in) inboxes_.erase(it);
}

Result<PayloadView> ConnectorBase::recv(std::string_view from, std::string_view to,
                                        Deadline deadline) {
  auto in = inbox(from, to, deadline);
  if (!in.ok()) return counted(in.status());
  bool writer_gone = false;
  auto t0 = Clock::now();
  auto view = next_from(**in, deadline, &writer_gone, &t0);
  if (writer_gone) drop_inbox(from, to, *in);  // open the queue again on the next call
  return count_in(std::move(view), t0);
}

}  // namespace omniconn
