// omniconn_demo: a producer and a consumer process stream payloads over the default
// SharedMemoryConnector in channel mode. The consumer (this process) re-executes itself as the
// producer, drives it with small control messages, verifies every payload it receives and
// prints throughput and one-way latency per payload size.
//
// Each payload is one u8 tensor "data" plus fields {"seq": n}. Tensor layout:
//   [0, 8)            send time (CLOCK_MONOTONIC ns), stamped right before send_loan
//   [8, size - 8)     fill byte derived from seq
//   [size - 8, size)  seq as uint64
#include <unistd.h>

#include <cstdio>
#include <exception>
#include <span>
#include <string>
#include <vector>

#include "bench_common.h"
#include "omniconn/connector.h"
#include "omniconn/payload.h"

namespace {

using namespace ocbench;  // NOLINT: helpers of this program
using omniconn::Connector;
using omniconn::PayloadKey;
using omniconn::PayloadView;

constexpr char kProducer[] = "producer";
constexpr char kConsumer[] = "consumer";
constexpr auto kOpTimeout = std::chrono::seconds(20);
constexpr size_t kMinSize = 24;  // stamp, at least 8 fill bytes, seq
// Streamed (and verified) before each measured stream: the first payloads of a run pay for
// one-time setup (the writer creating its arena, the reader connecting and mapping it).
constexpr uint64_t kWarmupPayloads = 16;

struct Options {
  std::vector<size_t> sizes;
  uint64_t count = 0;  // 0: by size
  std::string role;    // "" (consumer, the main process) or "producer"
  std::string name_space;
};

void print_help(const char* argv0) {
  std::printf(
      "usage: %s [--sizes=64,64K,1M,16M] [--count=N]\n"
      "\n"
      "Streams payloads from a producer process to a consumer process over the default\n"
      "SharedMemoryConnector (channel mode, loan -> write in place -> send_loan), verifies\n"
      "each payload (seq order, fields, fill pattern) and prints per size: payloads,\n"
      "throughput (GB/s, 1 GB = 1e9 bytes) and one-way latency p50/p99 (send_loan -> recv\n"
      "returned, both stamped with CLOCK_MONOTONIC).\n"
      "\n"
      "  --sizes LIST   tensor sizes, comma-separated, units B/K/M/G (binary); min %zu B\n"
      "  --count N      payloads per size (default: by size, the whole run takes seconds;\n"
      "                 %llu more per size are streamed first as a warm-up)\n"
      "  --help         this text\n"
      "\n"
      "Exit status: 0 when every payload arrived intact and in order, 1 on any error, 2 on\n"
      "bad usage.\n",
      argv0, kMinSize, static_cast<unsigned long long>(kWarmupPayloads));
}

Result<Options> parse_options(int argc, char** argv) {
  OMNICONN_ASSIGN_OR_RETURN(Args args, Args::parse(argc, argv));
  OMNICONN_RETURN_IF_ERROR(args.check_known({"sizes", "count", "role", "namespace", "help"}));
  Options opts;
  if (args.has("help")) {
    opts.role = "help";
    return opts;
  }
  OMNICONN_ASSIGN_OR_RETURN(opts.sizes,
                            parse_size_list(args.get("sizes", "64,64K,1M,16M"), kMinSize));
  OMNICONN_ASSIGN_OR_RETURN(opts.count, args.get_uint("count", 0));
  opts.role = args.get("role");
  if (!opts.role.empty() && opts.role != kProducer) {
    return Status::InvalidArgument("--role must be 'producer'");
  }
  opts.name_space = args.get("namespace", strf("demo-%d", static_cast<int>(getpid())));
  return opts;
}

// About 1-2 s of work per size on a small machine (16 GiB, at most 300000 payloads).
uint64_t payload_count(const Options& opts, size_t size) {
  if (opts.count > 0) return opts.count;
  return std::clamp<uint64_t>((size_t{16} * kGiB) / size, 100, 300000);
}

uint8_t fill_byte(uint64_t seq) {
  return static_cast<uint8_t>(seq * 37 + 11);
}

void write_pattern(std::span<std::byte> data, uint64_t seq) {
  std::memset(data.data() + 8, fill_byte(seq), data.size() - 16);
  std::memcpy(data.data() + data.size() - 8, &seq, 8);
}

// Checks fields, shape and pattern of payload `seq`; returns its send stamp.
Result<int64_t> check_payload(const PayloadView& view, size_t size, uint64_t seq) {
  const auto& reader = view.reader();
  const std::string where = strf("payload seq %llu (%s)", static_cast<unsigned long long>(seq),
                                 format_size(size).c_str());
  if (reader.tensor_count() != 1 || reader.tensor(0).data.size() != size) {
    return Status::Corrupt(where + ": wrong tensor count or size");
  }
  OMNICONN_ASSIGN_OR_RETURN(Value fields, reader.fields());
  if (field_int(fields, "seq") != static_cast<int64_t>(seq)) {
    return Status::Corrupt(strf("%s: fields.seq is %lld (out of order or lost)", where.c_str(),
                                static_cast<long long>(field_int(fields, "seq"))));
  }
  const std::byte* data = reader.tensor(0).data.data();
  uint64_t tail = 0;
  std::memcpy(&tail, data + size - 8, 8);
  const auto fill = static_cast<std::byte>(fill_byte(seq));
  if (tail != seq || data[8] != fill || data[size / 2] != fill || data[size - 9] != fill) {
    return Status::Corrupt(where + ": tensor bytes do not match the pattern");
  }
  int64_t t0 = 0;
  std::memcpy(&t0, data, 8);
  return t0;
}

// ---- Producer (child process) --------------------------------------------------------------

Status send_one(Connector& conn, size_t size, uint64_t seq) {
  omniconn::PayloadBuilder builder;
  OMNICONN_RETURN_IF_ERROR(
      builder.add_tensor("data", omniconn::DType::kU8, {static_cast<int64_t>(size)}));
  OMNICONN_RETURN_IF_ERROR(builder.set_fields(Value(Value::Map{{"seq", Value(seq)}})));
  const PayloadKey key{strf("demo-%zu-%llu", size, static_cast<unsigned long long>(seq)), kProducer,
                       kConsumer};
  const Deadline deadline = omniconn::deadline_in(kOpTimeout);
  OMNICONN_ASSIGN_OR_RETURN(omniconn::Loan loan, conn.loan(builder.encoded_size(), deadline));
  OMNICONN_RETURN_IF_ERROR(builder.write_layout(loan.bytes()).status());
  OMNICONN_ASSIGN_OR_RETURN(std::span<std::byte> data,
                            omniconn::mutable_tensor_data(loan.bytes(), 0));
  write_pattern(data, seq);
  const int64_t t0 = now_ns();
  std::memcpy(data.data(), &t0, 8);
  OMNICONN_RETURN_IF_ERROR(omniconn::finish_payload(loan.bytes()));
  return conn.send_loan(std::move(loan), key, deadline);
}

Status produce_stream(Connector& conn, size_t size, uint64_t count) {
  for (uint64_t seq = 0; seq < count; ++seq) {
    OMNICONN_RETURN_IF_ERROR(
        send_one(conn, size, seq)
            .WithContext(strf("send payload %llu of %s", static_cast<unsigned long long>(seq),
                              format_size(size).c_str())));
  }
  return Status::Ok();
}

Status run_producer(const Options& opts) {
  OMNICONN_ASSIGN_OR_RETURN(auto conn, make_shm({{"namespace", Value(opts.name_space)}}));
  for (;;) {
    OMNICONN_ASSIGN_OR_RETURN(Value cmd, recv_command(*conn, kConsumer, kProducer,
                                                      omniconn::deadline_in(kOpTimeout * 3)));
    const std::string name = field_string(cmd, "cmd");
    if (name == "quit") return Status::Ok();
    const int64_t size = field_int(cmd, "size");
    const int64_t count = field_int(cmd, "count");
    if (name != "stream" || size < static_cast<int64_t>(kMinSize) || count < 0) {
      return Status::InvalidArgument("bad command from the consumer");
    }
    OMNICONN_RETURN_IF_ERROR(
        produce_stream(*conn, static_cast<size_t>(size), static_cast<uint64_t>(count)));
  }
}

// ---- Consumer (main process) ---------------------------------------------------------------

struct Row {
  size_t size = 0;
  uint64_t count = 0;
  int64_t elapsed_ns = 0;
  LatencyStats latency;
};

Result<Row> consume_stream(Connector& conn, ChildProcess& producer, size_t size, uint64_t count) {
  Row row{size, count, 0, {}};
  std::vector<int64_t> latencies;
  latencies.reserve(count);
  const int64_t start = now_ns();
  OMNICONN_RETURN_IF_ERROR(
      send_command(conn, {"ctl", kConsumer, kProducer},
                   {{"cmd", "stream"}, {"size", Value(uint64_t{size})}, {"count", Value(count)}},
                   omniconn::deadline_in(kOpTimeout)));
  for (uint64_t seq = 0; seq < count; ++seq) {
    OMNICONN_ASSIGN_OR_RETURN(
        PayloadView view,
        recv_watching(conn, kProducer, kConsumer, omniconn::deadline_in(kOpTimeout), &producer));
    const int64_t t1 = now_ns();
    OMNICONN_ASSIGN_OR_RETURN(int64_t t0, check_payload(view, size, seq));
    latencies.push_back(t1 - t0);
    view.release();
  }
  row.elapsed_ns = now_ns() - start;
  row.latency = summarize_ns(std::move(latencies));
  return row;
}

void print_rows(const std::vector<Row>& rows) {
  Table table({"size", "payloads", "GB/s", "payloads/s", "p50 us", "p99 us", "max us"});
  for (const Row& r : rows) {
    const double bytes = static_cast<double>(r.size) * static_cast<double>(r.count);
    const double per_s = static_cast<double>(r.count) * 1e9 / static_cast<double>(r.elapsed_ns);
    table.add_row({format_size(r.size), strf("%llu", static_cast<unsigned long long>(r.count)),
                   strf("%.3f", gb_per_s(bytes, r.elapsed_ns)), strf("%.0f", per_s),
                   strf("%.1f", r.latency.p50_us), strf("%.1f", r.latency.p99_us),
                   strf("%.1f", r.latency.max_us)});
  }
  table.print(stdout);
}

Status run_consumer(const char* argv0, const Options& opts) {
  OMNICONN_ASSIGN_OR_RETURN(
      auto producer,
      ChildProcess::spawn_self(argv0, {"--role=producer", "--namespace=" + opts.name_space}));
  OMNICONN_ASSIGN_OR_RETURN(auto conn, make_shm({{"namespace", Value(opts.name_space)}}));
  std::printf(
      "omniconn_demo: producer pid %d -> consumer pid %d, SharedMemoryConnector "
      "(channel mode, default options, namespace %s), load average %s\n",
      static_cast<int>(producer->pid()), static_cast<int>(getpid()), opts.name_space.c_str(),
      load_average().c_str());
  std::fflush(stdout);
  std::vector<Row> rows;
  for (size_t size : opts.sizes) {
    auto warm = consume_stream(*conn, *producer, size, kWarmupPayloads);
    if (!warm.ok()) return warm.status().WithContext("warm-up, size " + format_size(size));
    auto row = consume_stream(*conn, *producer, size, payload_count(opts, size));
    if (!row.ok()) return row.status().WithContext("size " + format_size(size));
    rows.push_back(*row);
  }
  OMNICONN_RETURN_IF_ERROR(send_command(*conn, {"ctl", kConsumer, kProducer}, {{"cmd", "quit"}},
                                        omniconn::deadline_in(kOpTimeout)));
  OMNICONN_RETURN_IF_ERROR(producer->wait(omniconn::deadline_in(kOpTimeout), "producer"));
  print_rows(rows);
  std::printf(
      "all payloads verified (seq order, fields, fill pattern). Latency is one-way, "
      "send_loan -> recv returned,\nwhile streaming: it includes time spent queued behind "
      "earlier payloads when the consumer lags.\n");
  return Status::Ok();
}

int run(int argc, char** argv) {
  auto opts = parse_options(argc, argv);
  if (!opts.ok()) {
    std::fprintf(stderr, "omniconn_demo: %s\n", opts.status().ToString().c_str());
    return 2;
  }
  if (opts->role == "help") {
    print_help(argv[0]);
    return 0;
  }
  const bool producer = opts->role == kProducer;
  const Status st = producer ? run_producer(*opts) : run_consumer(argv[0], *opts);
  if (!st.ok()) {
    std::fprintf(stderr, "omniconn_demo [%s]: error: %s\n", producer ? "producer" : "consumer",
                 st.ToString().c_str());
    return 1;
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "omniconn_demo: fatal: %s\n", e.what());
    return 1;
  }
}
