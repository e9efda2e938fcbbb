// FileConnector: a connector type built as a plugin library (omniconn/plugin.h), out of
// omniconn's tree in all but location. It uses nothing of omniconn but its public headers,
// which is what it is here to show and test: the whole conformance suite runs on it after
// omniconn loads it from its shared library, and `omniconn validate` / `run` accept its type.
//
// Payloads are files under <directory>/<namespace>/payloads: written through a mapping of a
// temporary file (the loan), published by renaming it to its final name, taken by a reader
// that renames it away (exactly one reader wins), maps it read-only and unlinks it. Small
// payloads travel inline in the descriptor. Channel mode keeps each edge's descriptors as
// numbered files under <directory>/<namespace>/edges/<from>_to_<to>/, beside a file naming
// the edge's writer process, so a reader notices when the writer is gone.
#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <mutex>
#include <random>
#include <thread>

#include "omniconn/connector_base.h"
#include "omniconn/extra.h"
#include "omniconn/plugin.h"
#include "omniconn/registry.h"
#include "omniconn/stream.h"

namespace file_connector {

using namespace omniconn;
namespace fs = std::filesystem;

constexpr const char* kType = "FileConnector";
constexpr uint64_t kMiB = uint64_t{1} << 20;

struct Options {
  std::string directory = "/tmp/omniconn-file-connector";
  std::string name_space = "default";
  uint64_t inline_threshold_bytes = 65536;
  uint64_t capacity_bytes = 1024 * kMiB;  // unread payloads and loans of one writer
  uint64_t max_payload_bytes = 1024 * kMiB;
};

FieldErrors read_options(const Value& extra, Options* o) {
  ExtraReader r(extra);
  r.string("directory", &o->directory);
  r.string("namespace", &o->name_space, /*may_be_empty=*/false, /*max_len=*/256);
  r.integer("inline_threshold_bytes", 0, 16 * kMiB, &o->inline_threshold_bytes);
  r.integer("capacity_bytes", 1, uint64_t{1} << 40, &o->capacity_bytes);
  r.integer("max_payload_bytes", 1, uint64_t{1} << 40, &o->max_payload_bytes);
  return r.finish();
}

// A name safe as one path component: [A-Za-z0-9_-] kept, every other byte as %XX.
std::string safe_name(std::string_view s) {
  std::string out;
  for (unsigned char c : s) {
    if (std::isalnum(c) || c == '_' || c == '-') {
      out.push_back(static_cast<char>(c));
    } else {
      char hex[4];
      std::snprintf(hex, sizeof hex, "%%%02X", c);
      out += hex;
    }
  }
  return out;
}

// FNV-1a: any change of one byte changes it, which is all a descriptor's trailer must do.
uint64_t fnv1a(std::string_view s) {
  uint64_t h = 1469598103934665603ULL;
  for (unsigned char c : s) h = (h ^ c) * 1099511628211ULL;
  return h;
}

// ---- descriptor ---------------------------------------------------------------------------
//   "OCF1" | u8 inline | 3 zero | u64 size | u64 check | u16 len + bytes: file, request, from,
//   to | inline: the payload | u64 fnv1a of all before. check: the payload's header checksum
//   (a file) or the fnv1a of the payload (inline).

struct Desc {
  bool is_inline = false;
  uint64_t size = 0;
  uint64_t check = 0;
  std::string file;
  PayloadKey key;
  std::string payload;  // inline only
};

void put_u64(std::string* out, uint64_t v) {
  out->append(reinterpret_cast<const char*>(&v), 8);
}

std::string encode(const Desc& d) {
  std::string out = "OCF1";
  out.push_back(d.is_inline ? 1 : 0);
  out.append(3, '\0');
  put_u64(&out, d.size);
  put_u64(&out, d.check);
  for (const std::string* s : {&d.file, &d.key.request_id, &d.key.from_stage, &d.key.to_stage}) {
    uint16_t n = static_cast<uint16_t>(s->size());
    out.append(reinterpret_cast<const char*>(&n), 2);
    out += *s;
  }
  out += d.payload;
  put_u64(&out, fnv1a(out));
  return out;
}

class Cursor {
 public:
  explicit Cursor(std::string_view s) : s_(s) {}
  bool take(size_t n, std::string_view* out) {
    if (s_.size() < n) return false;
    *out = s_.substr(0, n);
    s_.remove_prefix(n);
    return true;
  }
  bool u64(uint64_t* v) {
    std::string_view b;
    if (!take(8, &b)) return false;
    std::memcpy(v, b.data(), 8);
    return true;
  }
  bool str(std::string* out) {
    std::string_view n, b;
    if (!take(2, &n)) return false;
    uint16_t len;
    std::memcpy(&len, n.data(), 2);
    if (!take(len, &b)) return false;
    out->assign(b);
    return true;
  }
  std::string_view rest() const { return s_; }

 private:
  std::string_view s_;
};

bool plain_file_name(const std::string& f) {
  return !f.empty() && f.size() < 200 &&
         f.find_first_not_of("0123456789abcdef-.payload") == std::string::npos && f[0] != '.';
}

Result<Desc> decode(std::string_view bytes) {
  auto bad = [] {
    return Status::Corrupt("FileConnector: not an intact FileConnector descriptor");
  };
  if (bytes.size() < 32 || bytes.substr(0, 4) != "OCF1") return bad();
  uint64_t trailer;
  std::memcpy(&trailer, bytes.data() + bytes.size() - 8, 8);
  std::string_view body = bytes.substr(0, bytes.size() - 8);
  if (trailer != fnv1a(body)) return bad();
  Desc d;
  Cursor c(body.substr(8));
  d.is_inline = body[4] == 1;
  if (!c.u64(&d.size) || !c.u64(&d.check) || !c.str(&d.file) || !c.str(&d.key.request_id) ||
      !c.str(&d.key.from_stage) || !c.str(&d.key.to_stage)) {
    return bad();
  }
  d.payload.assign(c.rest());
  if (d.is_inline ? (d.payload.size() != d.size || !d.file.empty())
                  : (!d.payload.empty() || !plain_file_name(d.file))) {
    return bad();
  }
  return d;
}

// ---- files --------------------------------------------------------------------------------

Status errno_status(const std::string& what) {
  int err = errno;
  std::string msg = "FileConnector: " + what + ": " + std::strerror(err);
  return err == ENOSPC ? Status::ResourceExhausted(msg) : Status::Unavailable(msg);
}

Status write_file(const fs::path& path, std::string_view bytes) {
  fs::path tmp = path.string() + ".tmp";
  {
    std::ofstream f(tmp, std::ios::binary | std::ios::trunc);
    f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    if (!f) return errno_status("writing " + tmp.string());
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) return errno_status("renaming " + tmp.string());
  return Status::Ok();
}

Result<std::string> read_file(const fs::path& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) return Status::NotFound("FileConnector: no " + path.string());
  return std::string(std::istreambuf_iterator<char>(f), {});
}

// A process that exited but was not waited for yet (a zombie) counts as gone.
bool process_alive(pid_t pid) {
  if (pid <= 0 || (::kill(pid, 0) != 0 && errno == ESRCH)) return false;
  auto stat = read_file("/proc/" + std::to_string(pid) + "/stat");
  if (!stat.ok()) return true;
  size_t paren = stat->rfind(')');
  return paren == std::string::npos || paren + 2 >= stat->size() || (*stat)[paren + 2] != 'Z';
}

// A file being written: a mapping of a temporary file in the payload directory.
class FileLoan final : public Loan::Impl {
 public:
  FileLoan(const void* owner, fs::path tmp, std::byte* data, size_t size,
           std::function<void(bool committed)> done)
      : owner_(owner), tmp_(std::move(tmp)), data_(data), size_(size), done_(std::move(done)) {}
  ~FileLoan() override {
    ::munmap(data_, size_);
    if (!committed_) ::unlink(tmp_.c_str());
    done_(committed_);
  }
  std::span<std::byte> bytes() override { return {data_, size_}; }
  const void* owner() const { return owner_; }
  const fs::path& tmp() const { return tmp_; }
  void committed() { committed_ = true; }

 private:
  const void* owner_;
  fs::path tmp_;
  std::byte* data_;
  size_t size_;
  std::function<void(bool)> done_;
  bool committed_ = false;
};

// ---- channel mode -------------------------------------------------------------------------

class EdgeSender final : public DescriptorSender {
 public:
  explicit EdgeSender(fs::path dir) : dir_(std::move(dir)) {}
  ~EdgeSender() override { ::unlink((dir_ / "writer").c_str()); }
  Status push(std::string_view descriptor, Deadline) override {
    std::lock_guard lock(mu_);
    OMNICONN_RETURN_IF_ERROR(write_file(dir_ / (std::to_string(seq_) + ".desc"), descriptor));
    ++seq_;
    return Status::Ok();
  }

 private:
  fs::path dir_;
  std::mutex mu_;
  uint64_t seq_ = 0;
};

class EdgeReceiver final : public DescriptorReceiver {
 public:
  EdgeReceiver(fs::path dir, std::string edge, pid_t writer)
      : dir_(std::move(dir)), edge_(std::move(edge)), writer_(writer) {}
  Result<bool> peek(std::string* descriptor, Deadline) override {
    auto d = read_file(next());
    if (!d.ok()) return false;
    *descriptor = std::move(*d);
    return true;
  }
  void consume() override {
    ::unlink(next().c_str());
    ++seq_;
  }
  Status wait(Deadline deadline) override {
    auto pause = std::chrono::microseconds(100);
    for (;;) {
      if (fs::exists(next())) return Status::Ok();
      if (!process_alive(writer_)) {
        if (fs::exists(next())) return Status::Ok();
        return Status::Unavailable("FileConnector: the writer of edge " + edge_ + " (pid " +
                                   std::to_string(writer_) + ") has exited");
      }
      auto now = Clock::now();
      if (now >= deadline) return Status::Timeout("FileConnector: nothing arrived on " + edge_);
      std::this_thread::sleep_for(std::min<Clock::duration>(pause, deadline - now));
      pause = std::min(pause * 2, std::chrono::microseconds(2000));
    }
  }

 private:
  fs::path next() const { return dir_ / (std::to_string(seq_) + ".desc"); }

  fs::path dir_;
  std::string edge_;
  pid_t writer_;
  uint64_t seq_ = 0;
};

// ---- the connector ------------------------------------------------------------------------

class FileConnector final : public ConnectorBase {
 public:
  explicit FileConnector(Options o)
      : o_(std::move(o)),
        root_(fs::path(o_.directory) / safe_name(o_.name_space)),
        payloads_(root_ / "payloads"),
        edges_(root_ / "edges"),
        writer_id_(std::random_device{}() * uint64_t{0x9E3779B97F4A7C15} ^ ::getpid()) {}
  ~FileConnector() override {
    close_queues();
    std::lock_guard lock(mu_);
    for (const auto& [file, u] : unread_) ::unlink((payloads_ / file).c_str());
    // Directories nobody uses any more go too (rmdir keeps those that are not empty).
    std::error_code ec;
    for (const auto& e : fs::directory_iterator(edges_, ec)) ::rmdir(e.path().c_str());
    for (const fs::path& d : {edges_, payloads_, root_}) ::rmdir(d.c_str());
  }

  Status start() {
    std::error_code ec;
    fs::create_directories(payloads_, ec);
    if (ec) return Status::Unavailable("FileConnector: cannot create " + payloads_.string());
    return Status::Ok();
  }

  std::string_view type_name() const override { return kType; }
  Status cleanup(std::string_view request_id) override {
    std::lock_guard lock(mu_);
    for (auto it = unread_.begin(); it != unread_.end();) {
      if (!belongs_to_request(it->second.request, request_id)) {
        ++it;
        continue;
      }
      ::unlink((payloads_ / it->first).c_str());
      reserved_ -= it->second.bytes;
      it = unread_.erase(it);
    }
    return Status::Ok();
  }
  Status health() override {
    return fs::is_directory(payloads_)
               ? Status::Ok()
               : Status::Unavailable("FileConnector: " + payloads_.string() + " is gone");
  }
  Status sweep(Deadline) override {
    std::lock_guard lock(mu_);
    for (auto it = unread_.begin(); it != unread_.end();) {
      if (fs::exists(payloads_ / it->first)) {
        ++it;
      } else {
        reserved_ -= it->second.bytes;
        it = unread_.erase(it);
      }
    }
    return Status::Ok();
  }

 protected:
  Result<Published> publish(const PayloadKey& key, const PayloadBuilder& payload,
                            Deadline deadline) override {
    if (payload.encoded_size() <= o_.inline_threshold_bytes) {
      OMNICONN_ASSIGN_OR_RETURN(std::vector<std::byte> bytes, payload.encode());
      return publish_inline(key, bytes);
    }
    OMNICONN_ASSIGN_OR_RETURN(Loan loan, lend(payload.encoded_size(), deadline));
    OMNICONN_RETURN_IF_ERROR(payload.write_to(loan.bytes()).status());
    return publish_file(static_cast<FileLoan*>(loan.impl()), key, payload.encoded_size());
  }
  Result<Loan> lend(size_t nbytes, Deadline deadline) override;
  Result<Published> publish_loan(Loan loan, const PayloadKey& key, Deadline) override {
    auto* impl = dynamic_cast<FileLoan*>(loan.impl());
    if (impl == nullptr || impl->owner() != this) {
      return Status::InvalidArgument("FileConnector: not a loan of this connector");
    }
    OMNICONN_RETURN_IF_ERROR(finish_payload(loan.bytes()));
    OMNICONN_ASSIGN_OR_RETURN(PayloadReader r, PayloadReader::open(loan.bytes()));
    if (r.size() <= o_.inline_threshold_bytes)
      return publish_inline(key, loan.bytes().first(r.size()));
    return publish_file(impl, key, r.size());
  }
  Result<PayloadView> take(std::string_view descriptor, Deadline, DescriptorReceiver*) override;
  void withdraw(std::string_view descriptor) override {
    auto d = decode(descriptor);
    if (!d.ok() || d->is_inline) return;
    ::unlink((payloads_ / d->file).c_str());
    forget(d->file);
  }
  Result<std::unique_ptr<DescriptorSender>> open_sender(std::string_view from,
                                                        std::string_view to) override;
  Result<std::unique_ptr<DescriptorReceiver>> open_receiver(std::string_view from,
                                                            std::string_view to, Deadline) override;
  void memory_metrics(Metrics* m) const override {
    std::lock_guard lock(mu_);
    m->capacity_bytes = o_.capacity_bytes;
    m->in_use_bytes = reserved_;
    m->in_flight = unread_.size() + loans_;
  }

 private:
  struct Unread {
    uint64_t bytes = 0;
    std::string request;
  };

  Result<Published> publish_inline(const PayloadKey& key, std::span<const std::byte> bytes) {
    Desc d;
    d.is_inline = true;
    d.size = bytes.size();
    d.key = key;
    d.payload.assign(reinterpret_cast<const char*>(bytes.data()), bytes.size());
    d.check = fnv1a(d.payload);
    return Published{encode(d), bytes.size(), true};
  }
  Result<Published> publish_file(FileLoan* loan, const PayloadKey& key, size_t size);
  void forget(const std::string& file) {
    std::lock_guard lock(mu_);
    if (auto it = unread_.find(file); it != unread_.end()) {
      reserved_ -= it->second.bytes;
      unread_.erase(it);
    }
  }
  fs::path edge_dir(std::string_view from, std::string_view to) const {
    return edges_ / (safe_name(from) + "_to_" + safe_name(to));
  }

  const Options o_;
  const fs::path root_, payloads_, edges_;
  const uint64_t writer_id_;
  std::atomic<uint64_t> seq_{0};
  mutable std::mutex mu_;
  std::map<std::string, Unread> unread_;  // files this writer published, not yet seen taken
  uint64_t reserved_ = 0;                 // bytes of unread files and loans
  uint64_t loans_ = 0;
};

// Capacity is backpressure: wait (sweeping for files readers took) until the deadline.
Result<Loan> FileConnector::lend(size_t nbytes, Deadline deadline) {
  if (nbytes == 0 || nbytes > o_.max_payload_bytes) {
    return Status::InvalidArgument("FileConnector: payload of " + std::to_string(nbytes) +
                                   " bytes: must be 1.." + std::to_string(o_.max_payload_bytes) +
                                   " bytes (extra.max_payload_bytes)");
  }
  for (;;) {
    {
      std::lock_guard lock(mu_);
      if (reserved_ + nbytes <= o_.capacity_bytes) {
        reserved_ += nbytes;
        ++loans_;
        break;
      }
    }
    if (Clock::now() >= deadline) {
      return Status::ResourceExhausted("FileConnector: capacity_bytes (" +
                                       std::to_string(o_.capacity_bytes) +
                                       ") held by unread payloads until the deadline");
    }
    OMNICONN_RETURN_IF_ERROR(sweep(deadline));
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  auto give_back = [this, nbytes](bool committed) {
    std::lock_guard lock(mu_);
    --loans_;
    if (!committed) reserved_ -= nbytes;  // a committed loan's bytes move to its file
  };
  char name[64];
  std::snprintf(name, sizeof name, "%016llx-%llu.payload.tmp",
                static_cast<unsigned long long>(writer_id_),
                static_cast<unsigned long long>(seq_.fetch_add(1)));
  fs::path tmp = payloads_ / name;
  int fd = ::open(tmp.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0 || ::ftruncate(fd, static_cast<off_t>(nbytes)) != 0) {
    Status st = errno_status("creating " + tmp.string());
    if (fd >= 0) ::close(fd);
    ::unlink(tmp.c_str());
    give_back(false);
    return st;
  }
  void* p = ::mmap(nullptr, nbytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  ::close(fd);
  if (p == MAP_FAILED) {
    ::unlink(tmp.c_str());
    give_back(false);
    return Status::ResourceExhausted("FileConnector: mmap of " + std::to_string(nbytes) + " bytes");
  }
  return Loan(std::make_unique<FileLoan>(this, tmp, static_cast<std::byte*>(p), nbytes, give_back));
}

Result<ConnectorBase::Published> FileConnector::publish_file(FileLoan* loan, const PayloadKey& key,
                                                             size_t size) {
  Desc d;
  d.size = size;
  std::memcpy(&d.check, loan->bytes().data() + 56, 8);  // the payload's header checksum
  d.key = key;
  std::string tmp = loan->tmp().filename().string();
  d.file = tmp.substr(0, tmp.size() - 4);  // without ".tmp"
  if (::rename(loan->tmp().c_str(), (payloads_ / d.file).c_str()) != 0) {
    return errno_status("publishing " + d.file);
  }
  {
    std::lock_guard lock(mu_);
    unread_[d.file] = Unread{loan->bytes().size(), key.request_id};
  }
  loan->committed();
  return Published{encode(d), size, false};
}

Result<PayloadView> FileConnector::take(std::string_view descriptor, Deadline,
                                        DescriptorReceiver*) {
  OMNICONN_ASSIGN_OR_RETURN(Desc d, decode(descriptor));
  if (d.is_inline) {
    if (fnv1a(d.payload) != d.check)
      return Status::Corrupt("FileConnector: inline payload damaged");
    return PayloadView::copy(d.key, std::as_bytes(std::span(d.payload)));
  }
  // The rename decides which reader gets the payload; the mapping outlives the name.
  static std::atomic<uint64_t> takes{0};
  fs::path file = payloads_ / d.file;
  fs::path mine = file.string() + ".taken-" + std::to_string(::getpid()) + "-" +
                  std::to_string(takes.fetch_add(1));
  if (::rename(file.c_str(), mine.c_str()) != 0) {
    return Status::NotFound("FileConnector: no payload " + d.file +
                            " (already taken or cleaned up)");
  }
  int fd = ::open(mine.c_str(), O_RDONLY | O_CLOEXEC);
  ::unlink(mine.c_str());
  forget(d.file);
  struct stat st {};
  if (fd < 0 || ::fstat(fd, &st) != 0 || static_cast<uint64_t>(st.st_size) < d.size) {
    if (fd >= 0) ::close(fd);
    return Status::Corrupt("FileConnector: payload file " + d.file +
                           " is shorter than its descriptor says");
  }
  void* p = ::mmap(nullptr, d.size, PROT_READ, MAP_SHARED, fd, 0);
  ::close(fd);
  if (p == MAP_FAILED) return Status::ResourceExhausted("FileConnector: mmap of " + d.file);
  std::shared_ptr<void> keep(p, [n = d.size](void* q) { ::munmap(q, n); });
  uint64_t check;
  std::memcpy(&check, static_cast<const std::byte*>(p) + 56, 8);
  if (check != d.check)
    return Status::Corrupt("FileConnector: " + d.file + " is not the payload its descriptor names");
  return PayloadView::make(d.key, {static_cast<const std::byte*>(p), d.size}, std::move(keep));
}

// One writer per edge: its pid in <edge>/writer, which a live other process may hold.
Result<std::unique_ptr<DescriptorSender>> FileConnector::open_sender(std::string_view from,
                                                                     std::string_view to) {
  fs::path dir = edge_dir(from, to);
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) return Status::Unavailable("FileConnector: cannot create " + dir.string());
  if (auto holder = read_file(dir / "writer"); holder.ok()) {
    pid_t pid = static_cast<pid_t>(std::atoi(holder->c_str()));
    if (pid != ::getpid() && process_alive(pid)) {
      return Status::Unavailable("FileConnector: another process (pid " + std::to_string(pid) +
                                 ") already writes on edge " + std::string(from) + "->" +
                                 std::string(to));
    }
  }
  OMNICONN_RETURN_IF_ERROR(write_file(dir / "writer", std::to_string(::getpid())));
  return std::unique_ptr<DescriptorSender>(std::make_unique<EdgeSender>(dir));
}

Result<std::unique_ptr<DescriptorReceiver>> FileConnector::open_receiver(std::string_view from,
                                                                         std::string_view to,
                                                                         Deadline) {
  std::string edge = std::string(from) + "->" + std::string(to);
  fs::path dir = edge_dir(from, to);
  auto holder = read_file(dir / "writer");
  if (!holder.ok()) {
    return Status::NotFound("FileConnector: no writer on edge " + edge + " (namespace '" +
                            o_.name_space + "')");
  }
  pid_t pid = static_cast<pid_t>(std::atoi(holder->c_str()));
  return std::unique_ptr<DescriptorReceiver>(std::make_unique<EdgeReceiver>(dir, edge, pid));
}

ConnectorType file_connector_type() {
  ConnectorType t;
  t.name = kType;
  t.capabilities.scoped_by_namespace = true;
  t.capabilities.notices_dead_writer = true;
  t.validate = [](const Value& extra) {
    Options o;
    return read_options(extra, &o);
  };
  t.create = [](const ConnectorSpec& spec) -> Result<std::unique_ptr<Connector>> {
    Options o;
    OMNICONN_RETURN_IF_ERROR(field_errors_status(kType, read_options(spec.extra, &o)));
    auto c = std::make_unique<FileConnector>(std::move(o));
    OMNICONN_RETURN_IF_ERROR(c->start());
    return std::unique_ptr<Connector>(std::move(c));
  };
  return t;
}

Status register_types(ConnectorRegistry* registry) {
  return registry->register_type(file_connector_type());
}

}  // namespace file_connector

OMNICONN_PLUGIN("file-connector (omniconn tests)", file_connector::register_types)
