// base_config inheritance, platform overrides and ${VAR} expansion (see document.h).
#include "config/document.h"

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace omniconn::config {

namespace {

namespace fs = std::filesystem;

constexpr size_t kMaxChain = 16;  // files in one base_config chain

// Stage fields whose maps vllm-omni merges key by key instead of replacing them.
bool deep_merged(std::string_view key) {
  return key == "default_sampling_params" || key == "subtalker_sampling_params" ||
         key == "engine_extras" || key == "engine_args";
}

// ---- locations ----------------------------------------------------------------------------

bool in_subtree(std::string_view path, std::string_view prefix) {
  if (prefix.empty()) return true;
  if (!path.starts_with(prefix)) return false;
  return path.size() == prefix.size() || path[prefix.size()] == '.' || path[prefix.size()] == '[';
}

void erase_subtree(Locs* locs, const std::string& prefix) {
  for (auto it = locs->lower_bound(prefix); it != locs->end() && it->first.starts_with(prefix);) {
    it = in_subtree(it->first, prefix) ? locs->erase(it) : std::next(it);
  }
}

// Copies the locations of `from_prefix`'s subtree to `to_prefix`'s, replacing what was there.
void copy_subtree(const Locs& from, const std::string& from_prefix, Locs* to,
                  const std::string& to_prefix) {
  for (auto it = from.lower_bound(from_prefix); it != from.end(); ++it) {
    if (!it->first.starts_with(from_prefix)) break;
    if (!in_subtree(it->first, from_prefix)) continue;
    (*to)[to_prefix + it->first.substr(from_prefix.size())] = it->second;
  }
}

// One side of a merge: a value, where it sits, and the locations of its file.
struct Side {
  const Value* value;
  std::string path;
  const Locs* locs;
};

// ---- merging ------------------------------------------------------------------------------

class Merger {
 public:
  Merger(Diagnostics* diag, Locs* out) : diag_(diag), out_(out) {}

  // vllm-omni's resolve_deploy_yaml: `over` inherits `base`.
  Value documents(const Value::Map& base, const Locs& bl, const Value::Map& over, const Locs& ol);
  // Stage lists merged by stage_id (the base's order, then the overlay's new stages).
  Value stage_lists(const Side& base, const Side& over, const std::string& out_path);
  // One stage over another: the overlay wins per field; the deep-merged maps key by key.
  Value stage(const Side& base, const Side& over, const std::string& out_path);

 private:
  Value platforms(const Side& base, const Side& over);
  Value deep(const Side& base, const Side& over, const std::string& out_path);
  const Value::List* stage_list(const Side& s);
  std::optional<int64_t> stage_id(const Value& stage, const std::string& path, const Locs& locs);

  Diagnostics* diag_;
  Locs* out_;
};

Value Merger::documents(const Value::Map& base, const Locs& bl, const Value::Map& over,
                        const Locs& ol) {
  Value::Map merged = base;
  copy_subtree(bl, "", out_, "");
  for (const auto& [key, value] : over) {
    if (key == "stages" || key == "platforms") continue;
    merged[key] = value;
    erase_subtree(out_, key);
    copy_subtree(ol, key, out_, key);
  }
  (*out_)[""] = ol.contains("") ? ol.at("") : Loc{};
  const Value* bs = base.contains("stages") ? &base.at("stages") : nullptr;
  const Value* os = over.contains("stages") ? &over.at("stages") : nullptr;
  if (bs != nullptr || os != nullptr) {
    merged["stages"] = stage_lists({bs, "stages", &bl}, {os, "stages", &ol}, "stages");
  }
  const Value* bp = base.contains("platforms") ? &base.at("platforms") : nullptr;
  const Value* op = over.contains("platforms") ? &over.at("platforms") : nullptr;
  if (bp != nullptr || op != nullptr) {
    merged["platforms"] = platforms({bp, "platforms", &bl}, {op, "platforms", &ol});
  }
  return Value(std::move(merged));
}

const Value::List* Merger::stage_list(const Side& s) {
  static const Value::List kEmpty;
  if (s.value == nullptr || s.value->is_nil()) return &kEmpty;
  if (const Value::List* l = s.value->as_list()) return l;
  diag_->add_in(*s.locs, s.path, "want a list of stages, got " + describe(*s.value),
                "write `stages:` followed by `- stage_id: <n>` entries");
  return nullptr;
}

std::optional<int64_t> Merger::stage_id(const Value& stage, const std::string& path,
                                        const Locs& locs) {
  const Value* id = stage.find("stage_id");
  if (id != nullptr && id->as_int()) return id->as_int();
  diag_->add_in(locs, path + ".stage_id",
                id == nullptr ? "the stage has no stage_id, which base_config merging needs"
                              : "want a stage id (an integer), got " + describe(*id),
                "give every stage of both files a `stage_id: <n>`");
  return std::nullopt;
}

Value Merger::stage_lists(const Side& base, const Side& over, const std::string& out_path) {
  const Value::List* bl = stage_list(base);
  const Value::List* ol = stage_list(over);
  if (bl == nullptr || ol == nullptr) return Value(Value::List{});
  std::vector<std::pair<int64_t, Value>> stages;  // in vllm-omni's dict order
  auto index_of = [&](int64_t id) {
    for (size_t i = 0; i < stages.size(); ++i) {
      if (stages[i].first == id) return static_cast<int64_t>(i);
    }
    return int64_t{-1};
  };
  Locs staged;  // locations under "#<i>" while the list is being built
  for (size_t i = 0; i < bl->size(); ++i) {
    std::string p = join_index(base.path, i);
    auto id = stage_id((*bl)[i], p, *base.locs);
    if (!id) continue;
    int64_t at = index_of(*id);
    std::string tmp = "#" + std::to_string(at < 0 ? stages.size() : static_cast<size_t>(at));
    erase_subtree(&staged, tmp);
    copy_subtree(*base.locs, p, &staged, tmp);
    if (at < 0) {
      stages.emplace_back(*id, (*bl)[i]);
    } else {
      stages[at].second = (*bl)[i];  // a duplicate id: the later one, as a dict would
    }
  }
  for (size_t i = 0; i < ol->size(); ++i) {
    std::string p = join_index(over.path, i);
    auto id = stage_id((*ol)[i], p, *over.locs);
    if (!id) continue;
    int64_t at = index_of(*id);
    if (at < 0) {
      std::string tmp = "#" + std::to_string(stages.size());
      copy_subtree(*over.locs, p, &staged, tmp);
      stages.emplace_back(*id, (*ol)[i]);
      continue;
    }
    std::string tmp = "#" + std::to_string(at);
    Value prev = stages[at].second;
    Locs prev_locs;
    copy_subtree(staged, tmp, &prev_locs, tmp);
    std::swap(*out_, staged);
    stages[at].second = stage({&prev, tmp, &prev_locs}, {&(*ol)[i], p, over.locs}, tmp);
    std::swap(*out_, staged);
  }
  Loc list_at = over.locs->contains(over.path)   ? over.locs->at(over.path)
                : base.locs->contains(base.path) ? base.locs->at(base.path)
                                                 : Loc{};
  erase_subtree(out_, out_path);
  if (list_at.line > 0) (*out_)[out_path] = list_at;
  Value::List list;
  for (size_t i = 0; i < stages.size(); ++i) {
    copy_subtree(staged, "#" + std::to_string(i), out_, join_index(out_path, i));
    list.push_back(std::move(stages[i].second));
  }
  return Value(std::move(list));
}

Value Merger::stage(const Side& base, const Side& over, const std::string& out_path) {
  const Value::Map* b = base.value->as_map();
  const Value::Map* o = over.value->as_map();
  if (b == nullptr || o == nullptr) return *over.value;
  Value::Map merged = *b;
  erase_subtree(out_, out_path);
  copy_subtree(*base.locs, base.path, out_, out_path);
  for (const auto& [key, value] : *o) {
    std::string bp = join_key(base.path, key), op = join_key(over.path, key);
    std::string to = join_key(out_path, key);
    auto it = b->find(key);
    if (deep_merged(key) && it != b->end() && it->second.is_map() && value.is_map()) {
      merged[key] = deep({&it->second, bp, base.locs}, {&value, op, over.locs}, to);
      continue;
    }
    merged[key] = value;
    erase_subtree(out_, to);
    copy_subtree(*over.locs, op, out_, to);
  }
  return Value(std::move(merged));
}

// Maps merged recursively; anything else: the overlay's value.
Value Merger::deep(const Side& base, const Side& over, const std::string& out_path) {
  const Value::Map* b = base.value->as_map();
  const Value::Map* o = over.value->as_map();
  Value::Map merged = *b;
  for (const auto& [key, value] : *o) {
    std::string to = join_key(out_path, key);
    auto it = b->find(key);
    if (it != b->end() && it->second.is_map() && value.is_map()) {
      merged[key] = deep({&it->second, join_key(base.path, key), base.locs},
                         {&value, join_key(over.path, key), over.locs}, to);
      continue;
    }
    merged[key] = value;
    erase_subtree(out_, to);
    copy_subtree(*over.locs, join_key(over.path, key), out_, to);
  }
  return Value(std::move(merged));
}

// vllm-omni's _merge_platforms: per platform, the overlay's keys win and stages merge by id.
Value Merger::platforms(const Side& base, const Side& over) {
  static const Value kNil;
  const Value::Map* b = base.value != nullptr ? base.value->as_map() : nullptr;
  const Value::Map* o = over.value != nullptr ? over.value->as_map() : nullptr;
  if (b == nullptr || o == nullptr) {  // one side only (or not a map: the builder reports it)
    const Side& s = o != nullptr || over.value != nullptr ? over : base;
    copy_subtree(*s.locs, s.path, out_, "platforms");
    return *s.value;
  }
  Value::Map merged;
  copy_subtree(*base.locs, base.path, out_, "platforms");
  for (const auto& [name, plat] : *o) {
    std::string p = join_key("platforms", name);
    auto bit = b->find(name);
    if (bit == b->end() || !bit->second.is_map() || !plat.is_map()) {
      erase_subtree(out_, p);
      copy_subtree(*over.locs, p, out_, p);
      continue;
    }
    Value::Map m = *bit->second.as_map();
    for (const auto& [k, v] : *plat.as_map()) {
      if (k == "stages") continue;
      m[k] = v;
      erase_subtree(out_, join_key(p, k));
      copy_subtree(*over.locs, join_key(p, k), out_, join_key(p, k));
    }
    const Value* bs = bit->second.find("stages");
    const Value* os = plat.find("stages");
    std::string sp = join_key(p, "stages");
    m["stages"] = stage_lists({bs != nullptr ? bs : &kNil, sp, base.locs},
                              {os != nullptr ? os : &kNil, sp, over.locs}, sp);
    merged[name] = Value(std::move(m));
  }
  for (const auto& [name, plat] : *b) merged.emplace(name, plat);
  return Value(std::move(merged));
}

// ---- the base_config chain ----------------------------------------------------------------

class Resolver {
 public:
  Resolver(Diagnostics* diag, const LoadOptions& options) : diag_(diag), options_(options) {}
  std::optional<Value> resolve(const std::string& text);

 private:
  std::optional<Value> read_chain(const std::string& text, int file);
  std::optional<Value> inherit(Value doc, const Value& ref, int file);
  void apply_platform(Value* doc);
  void apply_platform_stage(Value::List* stages, const std::string& list, const Value& ps,
                            const std::string& path);
  void expand_settings(Value* doc);

  Diagnostics* diag_;
  const LoadOptions& options_;
  std::vector<std::string> chain_;  // canonical paths of the files being read, outermost first
};

std::optional<Value> Resolver::resolve(const std::string& text) {
  std::error_code ec;
  chain_.push_back(fs::weakly_canonical(fs::path(diag_->file()), ec).string());
  std::optional<Value> doc = read_chain(text, 0);
  if (!doc) return std::nullopt;
  apply_platform(&*doc);
  expand_settings(&*doc);
  return doc;
}

std::optional<Value> Resolver::read_chain(const std::string& text, int file) {
  std::optional<Value> doc = read_yaml(text, diag_, file);
  if (!doc) return std::nullopt;
  Value::Map* top = doc->as_map();
  if (top == nullptr) return doc;  // the builder says what the top level must be
  auto it = top->find("base_config");
  if (it == top->end()) return doc;
  Value ref = std::move(it->second);
  top->erase(it);
  if (ref.is_nil()) return doc;
  return inherit(std::move(*doc), ref, file);
}

std::optional<Value> Resolver::inherit(Value doc, const Value& ref, int file) {
  const std::string* name = ref.as_string();
  if (name == nullptr || name->empty()) {
    diag_->add("base_config", "want the name of the file this one inherits, got " + describe(ref),
               "write `base_config: other.yaml` (relative to this file)");
    return std::nullopt;
  }
  fs::path path = (fs::path(diag_->files()[file]).parent_path() / *name).lexically_normal();
  std::error_code ec;
  std::string canonical = fs::weakly_canonical(path, ec).string();
  std::string shown;
  for (const std::string& f : diag_->files()) shown += f + " -> ";
  if (std::find(chain_.begin(), chain_.end(), canonical) != chain_.end()) {
    diag_->add("base_config", "base_config cycle: " + shown + path.string(),
               "remove base_config from one of these files");
    return std::nullopt;
  }
  if (chain_.size() >= kMaxChain) {
    diag_->add("base_config", "base_config chain longer than 16 files: " + shown + path.string(),
               "inherit fewer levels");
    return std::nullopt;
  }
  std::string error;
  std::optional<std::string> text = read_file(path.string(), &error);
  if (!text) {
    diag_->add("base_config", "cannot read the base config " + path.string() + ": " + error,
               "base_config names a file relative to the file that names it");
    return std::nullopt;
  }
  Locs mine = std::exchange(diag_->locs(), {});
  int base_file = diag_->add_file(path.string());
  chain_.push_back(canonical);
  std::optional<Value> base = read_chain(*text, base_file);
  chain_.pop_back();
  Locs theirs = std::exchange(diag_->locs(), std::move(mine));
  if (!base) return std::nullopt;
  const Value::Map* bm = base->as_map();
  const Value::Map* om = doc.as_map();
  if (bm == nullptr) {
    diag_->add("base_config", "the top level of " + path.string() + " is not a map",
               "a deploy config starts with `stages:`");
    return std::nullopt;
  }
  Locs merged;
  Merger merger(diag_, &merged);
  Value out = merger.documents(*bm, theirs, *om, diag_->locs());
  diag_->locs() = std::move(merged);
  return out;
}

// ---- platforms ----------------------------------------------------------------------------

void Resolver::apply_platform(Value* doc) {
  if (options_.platform.empty()) return;
  const Value* plats = doc->find("platforms");
  std::vector<std::string> names;
  if (plats != nullptr && plats->as_map() != nullptr) {
    for (const auto& [n, v] : *plats->as_map()) names.push_back(n);
  }
  const Value* plat = plats != nullptr ? plats->find(options_.platform) : nullptr;
  if (plat == nullptr) {
    diag_->note(plats != nullptr ? "platforms" : "",
                "platform '" + options_.platform + "' has no overrides here" +
                    (names.empty() ? " (the file has no platforms section)"
                                   : " (platforms: " + join_names(names) + ")"),
                "nothing was overridden; check the platform name");
    return;
  }
  std::string path = join_key("platforms", options_.platform);
  const Value* ps = plat->find("stages");
  Value::Map* top = doc->as_map();
  auto st = top->find(top->contains("stage_args") ? "stage_args" : "stages");
  if (ps == nullptr || ps->as_list() == nullptr || st == top->end() ||
      st->second.as_list() == nullptr) {
    return;
  }
  Value overrides = *ps;  // `doc` changes below
  for (size_t i = 0; i < overrides.as_list()->size(); ++i) {
    apply_platform_stage(st->second.as_list(), st->first, (*overrides.as_list())[i],
                         join_index(join_key(path, "stages"), i));
  }
}

// vllm-omni's _apply_platform_overrides for one stage entry: a nested `engine_args:` layout or
// the flat one, fields replaced, the deep-merged maps updated key by key.
void Resolver::apply_platform_stage(Value::List* stages, const std::string& list, const Value& ps,
                                    const std::string& path) {
  const Value* id = ps.find("stage_id");
  if (id == nullptr || !id->as_int()) {
    diag_->add(path + ".stage_id", "a platform override names no stage_id",
               "add `stage_id: <n>` of the stage it overrides");
    return;
  }
  for (size_t i = 0; i < stages->size(); ++i) {
    Value& stage = (*stages)[i];
    const Value* sid = stage.find("stage_id");
    if (sid == nullptr || sid->as_int() != id->as_int() || !stage.is_map()) continue;
    const Value* nested = ps.find("engine_args");
    const Value& fields = nested != nullptr && nested->is_map() ? *nested : ps;
    std::string fields_path = &fields == &ps ? path : join_key(path, "engine_args");
    std::string to = join_index(list, i);
    const Locs from = diag_->locs();  // the override's own locations, unchanged below
    for (const auto& [key, value] : *fields.as_map()) {
      if (key == "stage_id") continue;
      Value& slot = (*stage.as_map())[key];
      if ((deep_merged(key) || key == "env") && slot.is_map() && value.is_map()) {
        for (const auto& [k, v] : *value.as_map()) (*slot.as_map())[k] = v;
      } else {
        slot = value;
        erase_subtree(&diag_->locs(), join_key(to, key));
      }
      copy_subtree(from, join_key(fields_path, key), &diag_->locs(), join_key(to, key));
    }
    return;
  }
  diag_->note(path, "platform override for stage " + std::to_string(*id->as_int()) +
                        ", which is not in stages: ignored (as vllm-omni does)");
}

// ---- ${VAR} -------------------------------------------------------------------------------

// Where omniconn reads settings: the connector definitions, the edges, and each stage's
// stage_id, engine_input_source and connector references.
void Resolver::expand_settings(Value* doc) {
  Value::Map* top = doc->as_map();
  if (top == nullptr) return;
  for (const char* key : {"connectors", "edges"}) {
    if (auto it = top->find(key); it != top->end()) expand_env(&it->second, key, diag_);
  }
  if (auto it = top->find("runtime"); it != top->end()) expand_env(&it->second, "runtime", diag_);
  for (const char* list : {"stages", "stage_args"}) {
    auto it = top->find(list);
    if (it == top->end() || it->second.as_list() == nullptr) continue;
    Value::List& stages = *it->second.as_list();
    for (size_t i = 0; i < stages.size(); ++i) {
      Value::Map* m = stages[i].as_map();
      if (m == nullptr) continue;
      for (const char* k :
           {"stage_id", "engine_input_source", "input_connectors", "output_connectors"}) {
        if (auto f = m->find(k); f != m->end()) {
          expand_env(&f->second, join_key(join_index(list, i), k), diag_);
        }
      }
    }
  }
}

// $NAME or ${NAME} at s[i] ('$'): the name and the length of the reference, or an empty name.
std::pair<std::string, size_t> reference_at(const std::string& s, size_t i) {
  auto name_char = [](char c, bool first) {
    return c == '_' || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
           (!first && c >= '0' && c <= '9');
  };
  if (i + 1 < s.size() && s[i + 1] == '{') {
    size_t close = s.find('}', i + 2);
    if (close == std::string::npos || close == i + 2) return {"", 0};
    return {s.substr(i + 2, close - i - 2), close - i + 1};
  }
  size_t j = i + 1;
  while (j < s.size() && name_char(s[j], j == i + 1)) ++j;
  return {s.substr(i + 1, j - i - 1), j - i};
}

}  // namespace

void expand_env(Value* v, const std::string& path, Diagnostics* diag) {
  if (Value::Map* m = v->as_map()) {
    for (auto& [k, child] : *m) expand_env(&child, join_key(path, k), diag);
    return;
  }
  if (Value::List* l = v->as_list()) {
    for (size_t i = 0; i < l->size(); ++i) expand_env(&(*l)[i], join_index(path, i), diag);
    return;
  }
  const std::string* s = v->as_string();
  if (s == nullptr || s->find('$') == std::string::npos) return;
  std::string out;
  std::vector<std::string> unset;
  for (size_t i = 0; i < s->size(); ++i) {
    auto [name, len] = (*s)[i] == '$' ? reference_at(*s, i) : std::pair<std::string, size_t>{};
    if (name.empty()) {
      out += (*s)[i];
      continue;
    }
    const char* value = std::getenv(name.c_str());
    if (value == nullptr) unset.push_back(name);
    out += value != nullptr ? std::string(value) : s->substr(i, len);
    i += len - 1;
  }
  if (!unset.empty()) {
    diag->add(path,
              "references unset environment variable" + std::string(unset.size() > 1 ? "s " : " ") +
                  join_names(unset) + " (value \"" + *s + "\")",
              "export " + unset[0] + "=... before running omniconn, or write the value itself");
    return;
  }
  *v = Value(std::move(out));
}

std::optional<Value> resolve_document(const std::string& text, const LoadOptions& options,
                                      Diagnostics* diag) {
  return Resolver(diag, options).resolve(text);
}

}  // namespace omniconn::config
