// Channel mode of the MooncakeConnector: an edge's descriptor queue lives in the store itself,
// one small object per descriptor under "<namespace>/~channel/<from>_to_<to>/<seq>", written by
// the edge's one writer in sequence and removed by its reader once consumed.
#pragma once

#include <memory>
#include <mutex>
#include <string>

#include "mooncake/mooncake_store.h"
#include "omniconn/connector_base.h"

namespace omniconn::mooncake {

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
