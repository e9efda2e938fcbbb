// Chunk keys and the rule by which cleanup(request) finds a request's payloads.
#include "omniconn/stream.h"

#include <gtest/gtest.h>

namespace omniconn {
namespace {

TEST(ChunkKeys, BelongToTheirRequestByVllmOmnisRule) {
  EXPECT_EQ(chunk_key("req-1", "2", 7), "req-1_2_7");
  EXPECT_TRUE(belongs_to_request("req-1", "req-1"));
  EXPECT_TRUE(belongs_to_request("req-1_2_7", "req-1"));
  EXPECT_TRUE(belongs_to_request("prefix_req-1", "req-1"));
  EXPECT_FALSE(belongs_to_request("req-10_2_7", "req-1"));
  EXPECT_FALSE(belongs_to_request("req-1x", "req-1"));
  EXPECT_FALSE(belongs_to_request("xreq-1", "req-1"));
  EXPECT_FALSE(belongs_to_request("req", "req-1"));
}

}  // namespace
}  // namespace omniconn
