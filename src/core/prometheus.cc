#include "omniconn/prometheus.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdlib>
#include <set>

namespace omniconn {

double LatencyHistogram::quantile_ns(double q) const {
  uint64_t total = count();
  if (total == 0) return 0;
  double rank = std::clamp(q, 0.0, 1.0) * static_cast<double>(total);
  uint64_t seen = 0;
  for (size_t i = 0; i < kBoundsNs.size(); ++i) {
    if (counts[i] == 0 || static_cast<double>(seen + counts[i]) < rank) {
      seen += counts[i];
      continue;
    }
    double lo = i == 0 ? 0 : static_cast<double>(kBoundsNs[i - 1]);
    double hi = static_cast<double>(kBoundsNs[i]);
    return lo + (hi - lo) * (rank - static_cast<double>(seen)) / static_cast<double>(counts[i]);
  }
  return static_cast<double>(kBoundsNs.back());
}

namespace {

bool name_start(char c, bool colon) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || (colon && c == ':');
}

bool name_char(char c, bool colon) {
  return name_start(c, colon) || (c >= '0' && c <= '9');
}

bool valid_name(std::string_view s, bool colon) {
  if (s.empty() || !name_start(s[0], colon)) return false;
  return std::all_of(s.begin(), s.end(), [colon](char c) { return name_char(c, colon); });
}

bool valid_label_name(std::string_view s) {
  return valid_name(s, false) && s.substr(0, 2) != "__";
}

std::string format_value(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  char buf[64];
  if (v == std::trunc(v) && std::fabs(v) < 1e15) {
    auto r = std::to_chars(buf, buf + sizeof buf, static_cast<int64_t>(v));
    return std::string(buf, r.ptr);
  }
  auto r = std::to_chars(buf, buf + sizeof buf, v);
  return std::string(buf, r.ptr);
}

void escape_into(std::string* out, std::string_view s, bool quotes) {
  for (char c : s) {
    if (c == '\\') {
      *out += "\\\\";
    } else if (c == '\n') {
      *out += "\\n";
    } else if (quotes && c == '"') {
      *out += "\\\"";
    } else {
      *out += c;
    }
  }
}

// name{a="x",b="y"} value
std::string sample_line(std::string_view name, const MetricLabels& labels, double value,
                        const std::pair<std::string, std::string>* extra = nullptr) {
  std::string out(name);
  if (!labels.empty() || extra != nullptr) {
    out += '{';
    bool first = true;
    auto add = [&](const std::pair<std::string, std::string>& l) {
      out += first ? "" : ",";
      first = false;
      out += l.first + "=\"";
      escape_into(&out, l.second, true);
      out += '"';
    };
    for (const auto& l : labels) add(l);
    if (extra != nullptr) add(*extra);
    out += '}';
  }
  return out + " " + format_value(value);
}

}  // namespace

Result<PrometheusText::Family*> PrometheusText::family(std::string_view name, std::string_view help,
                                                       std::string_view type,
                                                       const MetricLabels& labels) {
  if (!valid_name(name, true)) {
    return Status::InvalidArgument("metric name '" + std::string(name) +
                                   "' is not [a-zA-Z_:][a-zA-Z0-9_:]*");
  }
  std::set<std::string_view> seen;
  for (const auto& [k, v] : labels) {
    if (!valid_label_name(k) || (type == "histogram" && k == "le")) {
      return Status::InvalidArgument("label name '" + k + "' of " + std::string(name) +
                                     " is not [a-zA-Z_][a-zA-Z0-9_]* (nor __*, nor le on a "
                                     "histogram)");
    }
    if (!seen.insert(k).second) {
      return Status::InvalidArgument("label '" + k + "' given twice on " + std::string(name));
    }
  }
  auto it = index_.find(name);
  if (it != index_.end()) {
    Family& f = families_[it->second].second;
    if (f.type != type) {
      return Status::InvalidArgument("metric " + std::string(name) + " is a " + f.type +
                                     ", not a " + std::string(type));
    }
    return &f;
  }
  index_.emplace(std::string(name), families_.size());
  families_.emplace_back(std::string(name), Family{std::string(help), std::string(type), {}});
  return &families_.back().second;
}

Status PrometheusText::counter(std::string_view name, std::string_view help,
                               const MetricLabels& labels, double value) {
  auto f = family(name, help, "counter", labels);
  if (!f.ok()) return f.status();
  (*f)->samples.push_back(sample_line(name, labels, value));
  return Status::Ok();
}

Status PrometheusText::gauge(std::string_view name, std::string_view help,
                             const MetricLabels& labels, double value) {
  auto f = family(name, help, "gauge", labels);
  if (!f.ok()) return f.status();
  (*f)->samples.push_back(sample_line(name, labels, value));
  return Status::Ok();
}

Status PrometheusText::histogram(std::string_view name, std::string_view help,
                                 const MetricLabels& labels, const LatencyHistogram& h) {
  auto f = family(name, help, "histogram", labels);
  if (!f.ok()) return f.status();
  const std::string base(name);
  uint64_t cumulative = 0;
  for (size_t i = 0; i < LatencyHistogram::kBuckets; ++i) {
    cumulative += h.counts[i];
    std::pair<std::string, std::string> le{
        "le", i < LatencyHistogram::kBoundsNs.size()
                  ? format_value(static_cast<double>(LatencyHistogram::kBoundsNs[i]) / 1e9)
                  : "+Inf"};
    (*f)->samples.push_back(
        sample_line(base + "_bucket", labels, static_cast<double>(cumulative), &le));
  }
  (*f)->samples.push_back(sample_line(base + "_sum", labels, static_cast<double>(h.sum_ns) / 1e9));
  (*f)->samples.push_back(sample_line(base + "_count", labels, static_cast<double>(cumulative)));
  return Status::Ok();
}

Status PrometheusText::connector(const Metrics& m, const MetricLabels& labels) {
  struct Count {
    const char* name;
    const char* help;
    uint64_t value;
  };
  const Count counts[] = {
      {"omniconn_payloads_sent_total", "Payloads put or sent.", m.puts + m.sends},
      {"omniconn_payloads_received_total", "Payloads got or received.", m.gets},
      {"omniconn_bytes_sent_total", "Payload bytes put or sent.", m.bytes_out},
      {"omniconn_bytes_received_total", "Payload bytes got or received.", m.bytes_in},
      {"omniconn_inline_payloads_total", "Payloads that travelled inline in their descriptor.",
       m.inline_payloads},
      {"omniconn_timeouts_total", "Calls that reached their deadline.", m.timeouts},
      {"omniconn_reclaimed_total",
       "Payloads whose space was reclaimed from a dead or absent reader.", m.reclaimed},
  };
  for (const Count& c : counts) {
    OMNICONN_RETURN_IF_ERROR(counter(c.name, c.help, labels, static_cast<double>(c.value)));
  }
  for (size_t i = 1; i < kStatusCodeCount; ++i) {
    auto code = static_cast<StatusCode>(i);
    if (code == StatusCode::kTimeout) continue;  // omniconn_timeouts_total
    std::string name(status_code_name(code));
    std::replace(name.begin(), name.end(), ' ', '_');
    MetricLabels l = labels;
    l.emplace_back("code", name);
    OMNICONN_RETURN_IF_ERROR(counter("omniconn_errors_total",
                                     "Failed calls other than timeouts, by status code.", l,
                                     static_cast<double>(m.errors_by_code[i])));
  }
  const Count gauges[] = {
      {"omniconn_in_flight_payloads", "Payloads written and not yet released by their reader.",
       m.in_flight},
      {"omniconn_memory_in_use_bytes", "Transport memory in use by payloads in flight.",
       m.in_use_bytes},
      {"omniconn_memory_capacity_bytes", "Transport memory this process holds for writing.",
       m.capacity_bytes},
  };
  for (const Count& g : gauges) {
    OMNICONN_RETURN_IF_ERROR(gauge(g.name, g.help, labels, static_cast<double>(g.value)));
  }
  OMNICONN_RETURN_IF_ERROR(histogram("omniconn_put_duration_seconds",
                                     "Successful put, commit, send and send_loan calls.", labels,
                                     m.put_latency));
  return histogram("omniconn_get_duration_seconds",
                   "Successful get calls, and recv from the moment a payload was there.", labels,
                   m.get_latency);
}

std::string PrometheusText::str() const {
  std::string out;
  for (const auto& [name, f] : families_) {
    out += "# HELP " + name + " ";
    escape_into(&out, f.help, false);
    out += "\n# TYPE " + name + " " + f.type + "\n";
    for (const std::string& s : f.samples) out += s + "\n";
  }
  return out;
}

std::string_view PrometheusSample::label(std::string_view key) const {
  for (const auto& [k, v] : labels) {
    if (k == key) return v;
  }
  return {};
}

namespace {

Status bad_line(size_t line, const std::string& why) {
  return Status::InvalidArgument("line " + std::to_string(line) + ": " + why);
}

bool parse_number(std::string_view s, double* out) {
  if (s == "+Inf" || s == "Inf") {
    *out = HUGE_VAL;
  } else if (s == "-Inf") {
    *out = -HUGE_VAL;
  } else if (s == "NaN") {
    *out = std::nan("");
  } else {
    std::string copy(s);
    char* end = nullptr;
    *out = std::strtod(copy.c_str(), &end);
    return !copy.empty() && end == copy.c_str() + copy.size();
  }
  return true;
}

// label="value" pairs after '{'; *pos ends after '}'.
Status parse_labels(std::string_view s, size_t* pos, size_t line, MetricLabels* out) {
  size_t i = *pos;
  for (;;) {
    if (i < s.size() && s[i] == '}') break;
    size_t start = i;
    while (i < s.size() && name_char(s[i], false)) ++i;
    std::string name(s.substr(start, i - start));
    if (!valid_label_name(name)) return bad_line(line, "bad label name '" + name + "'");
    if (i + 1 >= s.size() || s[i] != '=' || s[i + 1] != '"') {
      return bad_line(line, "label " + name + " has no =\"value\"");
    }
    i += 2;
    std::string value;
    for (;; ++i) {
      if (i >= s.size()) return bad_line(line, "unterminated value of label " + name);
      if (s[i] == '"') break;
      if (s[i] != '\\') {
        value += s[i];
        continue;
      }
      char e = ++i < s.size() ? s[i] : '\0';
      if (e != '\\' && e != '"' && e != 'n') {
        return bad_line(line, "bad escape in the value of label " + name);
      }
      value += e == 'n' ? '\n' : e;
    }
    out->emplace_back(std::move(name), std::move(value));
    ++i;
    if (i < s.size() && s[i] == ',') ++i;
  }
  *pos = i + 1;
  return Status::Ok();
}

// The family a sample belongs to: its own name, or a histogram's/summary's base name.
std::string family_of(const std::string& name,
                      const std::map<std::string, std::string, std::less<>>& types) {
  if (types.contains(name)) return name;
  for (std::string_view suffix : {"_bucket", "_sum", "_count", "_created"}) {
    if (name.size() <= suffix.size() || !name.ends_with(suffix)) continue;
    std::string base = name.substr(0, name.size() - suffix.size());
    auto it = types.find(base);
    if (it != types.end() && (it->second == "histogram" || it->second == "summary")) return base;
  }
  return name;
}

Status parse_comment(std::string_view s, size_t line, PrometheusScrape* out,
                     const std::set<std::string>& closed, const std::string& current) {
  if (s.rfind("# TYPE ", 0) != 0) return Status::Ok();  // HELP and other comments
  std::string_view rest = s.substr(7);
  size_t sp = rest.find(' ');
  std::string name(rest.substr(0, sp));
  std::string type(sp == std::string_view::npos ? "" : rest.substr(sp + 1));
  static const std::set<std::string, std::less<>> kTypes = {"counter", "gauge", "histogram",
                                                            "summary", "untyped"};
  if (!valid_name(name, true)) return bad_line(line, "bad metric name '" + name + "' in TYPE");
  if (!kTypes.contains(type)) return bad_line(line, "unknown type '" + type + "'");
  if (out->types.contains(name) || closed.contains(name) || name == current) {
    return bad_line(line, "TYPE of " + name + " after its samples or a second time");
  }
  out->types.emplace(std::move(name), std::move(type));
  return Status::Ok();
}

}  // namespace

Result<PrometheusScrape> parse_prometheus_text(std::string_view text) {
  PrometheusScrape out;
  std::set<std::string> closed;  // families whose samples ended
  std::string current;
  size_t line_no = 0;
  while (!text.empty()) {
    size_t nl = text.find('\n');
    std::string_view s = text.substr(0, nl);
    text = nl == std::string_view::npos ? std::string_view() : text.substr(nl + 1);
    ++line_no;
    if (s.empty()) continue;
    if (s[0] == '#') {
      OMNICONN_RETURN_IF_ERROR(parse_comment(s, line_no, &out, closed, current));
      continue;
    }
    PrometheusSample sample;
    size_t i = 0;
    while (i < s.size() && name_char(s[i], true)) ++i;
    sample.name = std::string(s.substr(0, i));
    if (!valid_name(sample.name, true)) return bad_line(line_no, "bad metric name");
    if (i < s.size() && s[i] == '{') {
      ++i;
      OMNICONN_RETURN_IF_ERROR(parse_labels(s, &i, line_no, &sample.labels));
    }
    if (i >= s.size() || s[i] != ' ') return bad_line(line_no, "no value after " + sample.name);
    std::string_view rest = s.substr(i + 1);
    std::string_view value = rest.substr(0, rest.find(' '));  // a timestamp may follow
    if (!parse_number(value, &sample.value)) {
      return bad_line(line_no, "value '" + std::string(value) + "' is not a number");
    }
    std::string fam = family_of(sample.name, out.types);
    if (fam != current) {
      if (closed.contains(fam)) return bad_line(line_no, "samples of " + fam + " split apart");
      if (!current.empty()) closed.insert(current);
      current = fam;
    }
    out.samples.push_back(std::move(sample));
  }
  return out;
}

}  // namespace omniconn
