#include "plot.h"

#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <vector>

extern char** environ;

namespace omniconn::tools {

namespace {

// The source tree's script, else the installed one; OMNICONN_PLOT_SCRIPT overrides both.
std::string script() {
  const char* env = std::getenv("OMNICONN_PLOT_SCRIPT");
  for (std::string p : {std::string(env != nullptr ? env : ""), std::string(OMNICONN_PLOT_SCRIPT),
                        std::string(OMNICONN_DATADIR) + "/omniconn/plot_run.py"}) {
    if (!p.empty() && ::access(p.c_str(), R_OK) == 0) return p;
  }
  return "";
}

// Runs /usr/bin/python3 (Debian's, which sees python3-matplotlib) with `args`; its exit code.
int python(std::vector<std::string> args) {
  const char* py = ::access("/usr/bin/python3", X_OK) == 0 ? "/usr/bin/python3" : "python3";
  args.insert(args.begin(), py);
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  pid_t pid = 0;
  if (::posix_spawnp(&pid, py, nullptr, nullptr, argv.data(), environ) != 0) return 127;
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128;
}

std::string dir_of(const std::string& file) {
  size_t slash = file.rfind('/');
  return slash == std::string::npos ? "." : slash == 0 ? "/" : file.substr(0, slash);
}

}  // namespace

std::string plot_problem(const std::string& file) {
  size_t dot = file.rfind('.');
  std::string ext = dot == std::string::npos ? "" : file.substr(dot);
  if (ext != ".png" && ext != ".svg" && ext != ".pdf") {
    return "'" + file + "' must end in .png, .svg or .pdf (the format it is drawn in)";
  }
  std::string s = script();
  if (s.empty()) {
    return "the plot script is missing (" + std::string(OMNICONN_PLOT_SCRIPT) + ", or " +
           OMNICONN_DATADIR + "/omniconn/plot_run.py once installed)";
  }
  bool exists = ::access(file.c_str(), F_OK) == 0;
  if (exists ? ::access(file.c_str(), W_OK) != 0 : ::access(dir_of(file).c_str(), W_OK) != 0) {
    return "cannot write " + file + ": " + std::strerror(errno);
  }
  if (python({s, "--check"}) != 0) return "matplotlib cannot be imported (see above)";
  return "";
}

std::string plot_run(const RunReport& r, const std::string& title, const std::string& file) {
  nlohmann::json edges = nlohmann::json::array();
  for (const EdgeReport& e : r.edges) {
    edges.push_back({{"name", e.from + " -> " + e.to + " " + e.connector},
                     {"arrival_s", e.arrival_s},
                     {"latency_ms", e.latency_ms}});
  }
  nlohmann::json j = {{"title", title},
                      {"stream", r.requests.stream},
                      {"first_chunk_ms", r.requests.first_chunk_ms},
                      {"edges", edges}};
  char tmp[] = "/tmp/omniconn-plot-XXXXXX";
  int fd = ::mkstemp(tmp);
  if (fd < 0) return std::string("cannot create a temporary file: ") + std::strerror(errno);
  ::close(fd);
  {
    std::ofstream f(tmp);
    f << j.dump();
    if (!f) {
      ::unlink(tmp);
      return std::string("cannot write ") + tmp;
    }
  }
  int rc = python({script(), tmp, file});
  ::unlink(tmp);
  return rc == 0 ? "" : "the plot script failed (exit " + std::to_string(rc) + ")";
}

}  // namespace omniconn::tools
