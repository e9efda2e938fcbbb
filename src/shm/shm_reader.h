// The reading side of the SharedMemoryConnector: connections ("links") to writer processes,
// the segments mapped through them (slot table read-write, data read-only), and the leases
// that hold a payload's slot until its last view is gone.
#pragma once

#include <sys/types.h>

#include <map>
#include <memory>
#include <mutex>

#include "omniconn/connector.h"
#include "shm/shm_descriptor.h"
#include "shm/shm_layout.h"
#include "shm/shm_os.h"

namespace omniconn::shm {

struct SegmentView {
  Fd fd;  // kept for copy-on-write mappings of single payloads
  uint64_t data_offset = 0;
  Mapping ctl_map;   // [0, data_offset): header and slot table, read-write
  Mapping data_map;  // data region, read-only
  SegmentHeader* header = nullptr;
  Slot* slots = nullptr;
  uint32_t slot_count = 0;
  const std::byte* data = nullptr;
  uint64_t data_size = 0;
};

// One connection to a writer process; the writer knows us by reader_id and reclaims what we
// hold when the connection drops.
struct Link {
  Fd sock;
  uint32_t reader_id = 0;
  pid_t pid = 0;
  std::mutex mu;  // one request at a time; guards the maps below
  std::shared_ptr<SegmentView> arena;
  std::map<uint32_t, std::weak_ptr<SegmentView>> dedicated;
  uint32_t stale_replies = 0;  // replies to requests that timed out, still to be read

  bool hung_up() const { return peer_hung_up(sock.get()); }
};

// Connects to `socket_name` and completes the hello (checks the writer's uid).
Result<std::shared_ptr<Link>> open_link(const std::string& socket_name, Deadline deadline);
// Asks the writer for the control ring of the edge this link was opened on.
Result<Fd> request_ring(Link& link, Deadline deadline);
// Takes the payload a descriptor points at (PUBLISHED -> READING) and returns a view on it:
// on the read-only mapping of the segment, or (`writable`) on a copy-on-write mapping of the
// payload's pages of its own.
Result<PayloadView> take_payload(Link& link, const DecodedDescriptor& d, Deadline deadline,
                                 bool writable = false);

// The links of one connector, by writer id.
class LinkTable {
 public:
  Result<std::shared_ptr<Link>> get(uint64_t producer_id, Deadline deadline);

 private:
  std::mutex mu_;
  std::map<uint64_t, std::shared_ptr<Link>> links_;
};

}  // namespace omniconn::shm
