// `omniconn run --plot FILE.png`: the run drawn by tools/plot_run.py (through Debian's
// python3 and matplotlib): per-edge latency over the run, time to first chunk at the sink.
#pragma once

#include <string>

#include "omniconn/runtime.h"

namespace omniconn::tools {

// Before the run: "" when FILE can be drawn (it ends in .png, .svg or .pdf, the script is
// found, matplotlib imports, FILE's directory is writable), else what to fix.
std::string plot_problem(const std::string& file);

// After the run: draws it into `file`; "" on success, else why not.
std::string plot_run(const RunReport& report, const std::string& title, const std::string& file);

}  // namespace omniconn::tools
