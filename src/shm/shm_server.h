// ShmServer: the socket server of one SharedMemoryConnector writer. A thread of its own
// accepts readers (same uid only, SO_PEERCRED) on the writer's socket and on each edge's
// socket, gives every reader an id, passes it segment and ring memfds on request, and tells
// the allocator when a reader's connection drops (it died) so that its slots come back.
#pragma once

#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "shm/shm_allocator.h"
#include "shm/shm_os.h"

namespace omniconn::shm {

class ShmServer {
 public:
  // Listens on the writer's socket (producer_socket_name) and starts the thread.
  static Result<std::unique_ptr<ShmServer>> start(uint64_t producer_id, ShmAllocator* segments);
  ~ShmServer();  // stops the thread
  ShmServer(const ShmServer&) = delete;
  ShmServer& operator=(const ShmServer&) = delete;

  // Serves `ring_fd` (the server keeps a duplicate) to readers of `edge_socket`. *in_use is
  // set when another process already serves that socket name.
  Status serve_edge(const std::string& edge_socket, int ring_fd, bool* in_use);

 private:
  struct Conn {
    Fd fd;
    uint32_t reader_id = 0;
    int ring_fd = -1;  // the ring of the edge socket it connected to; -1 on the writer's
  };

  ShmServer(uint64_t producer_id, ShmAllocator* segments)
      : producer_id_(producer_id), segments_(segments) {}
  Status watch(int fd);
  void run();
  void handle(int fd);
  void accept_reader(int listen_fd, int ring_fd);
  void serve(Conn& conn);
  void drop(Conn& conn);

  const uint64_t producer_id_;
  ShmAllocator* const segments_;
  Fd epoll_;
  Fd wake_;
  Fd listen_;
  std::mutex mu_;                           // guards edges_
  std::map<int, std::pair<Fd, Fd>> edges_;  // listen fd -> (listen, own dup of ring)
  std::map<int, Conn> conns_;               // server thread only
  uint32_t next_reader_;
  std::thread thread_;
};

}  // namespace omniconn::shm
