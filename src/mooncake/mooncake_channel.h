// Channel mode of the MooncakeConnector: an edge's descriptor queue lives in the store itself,
// one small object per descriptor under "<namespace>/~channel/<from>_to_<to>/<seq>", written by
// the edge's one writer in sequence and removed by its reader once consumed.
//
// Placement: the edge's receiver announces its own segment under "<edge prefix>segment", and
// the sender puts each payload's replica there (preferred_segments), so that the bytes cross
// the network during the put and the reader's get is a copy within its own memory.
#pragma once

#include <chrono>
#include <map>
#include <memory>
#include <mutex>
#include <string>

#include "mooncake/mooncake_store.h"
#include "omniconn/connector_base.h"

namespace omniconn::mooncake {

// The key of the segment announcement of the edge whose key prefix is `prefix`.
inline std::string segment_key(const std::string& prefix) {
  return prefix + "segment";
}

// Announces the client's segment for the edge, replacing an earlier announcement (a reader
// that restarted): Mooncake keeps a key's first value. No store call when the client
// contributes no segment.
Status announce_segment(StoreClient& client, const std::string& prefix, Deadline deadline);

// A sender's view of its edges' announcements: read at an edge's first put, then once
// kRefresh has passed, or at the next put after one that could not use it; a put in between
// costs no store call.
class SegmentBook {
 public:
  static constexpr std::chrono::milliseconds kRefresh{1000};

  explicit SegmentBook(std::shared_ptr<StoreClient> client) : client_(std::move(client)) {}
  // The segment announced for the edge ("" for none, or unreadable for now).
  std::string preferred(const std::string& prefix);
  // A put could not use the edge's segment: read the announcement again at the next put.
  void stale(const std::string& prefix);

 private:
  struct Entry {
    std::string segment;
    Clock::time_point due;
  };

  std::shared_ptr<StoreClient> client_;
  std::mutex mu_;
  std::map<std::string, Entry, std::less<>> edges_;
};

class ChannelSender final : public DescriptorSender {
 public:
  // `prefix` is the edge's key prefix, "<namespace>/~channel/<edge>/".
  ChannelSender(std::shared_ptr<StoreClient> client, std::string prefix)
      : client_(std::move(client)), prefix_(std::move(prefix)) {}
  // InvalidArgument when the next key is taken (left by an earlier run in this namespace).
  Status push(std::string_view descriptor, Deadline deadline) override;

 private:
  std::shared_ptr<StoreClient> client_;
  const std::string prefix_;
  std::mutex mu_;  // one push at a time: sequence numbers stay dense
  uint64_t seq_ = 0;
};

class ChannelReceiver final : public DescriptorReceiver {
 public:
  ChannelReceiver(std::shared_ptr<StoreClient> client, std::string prefix)
      : client_(std::move(client)), prefix_(std::move(prefix)) {}
  Result<bool> peek(std::string* descriptor, Deadline deadline) override;
  void consume() override;
  // Polls the next key (Backoff) until it exists or the deadline passes.
  Status wait(Deadline deadline) override;

 private:
  std::string key() const { return prefix_ + std::to_string(seq_); }

  std::shared_ptr<StoreClient> client_;
  const std::string prefix_;
  uint64_t seq_ = 0;
  int64_t size_ = -1;  // of the next key, once wait or peek saw it
  bool have_ = false;  // peek read the next descriptor into desc_
  std::string desc_;
};

}  // namespace omniconn::mooncake
