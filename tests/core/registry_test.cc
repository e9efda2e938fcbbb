// The connector registry, reading `extra` settings, and plugin loading errors, on registries
// of the test's own (this binary links omniconn_core alone: no built-in connector).
#include "omniconn/registry.h"

#include <gtest/gtest.h>

#include "omniconn/extra.h"

namespace omniconn {
namespace {

ConnectorType test_type(std::string name, bool automatic = false) {
  ConnectorType t;
  t.name = std::move(name);
  t.capabilities.automatic = automatic;
  t.validate = [](const Value& extra) {
    ExtraReader r(extra);
    uint64_t n = 0;
    r.integer("size", 1, 100, &n);
    return r.finish();
  };
  t.create = [](const ConnectorSpec&) -> Result<std::unique_ptr<Connector>> {
    return Status::Unavailable("test type: nothing to create");
  };
  return t;
}

Value map(std::initializer_list<std::pair<const char*, Value>> kv) {
  Value::Map m;
  for (const auto& [k, v] : kv) m.emplace(k, v);
  return Value(std::move(m));
}

TEST(Registry, RegistersFindsAndListsTypes) {
  ConnectorRegistry r;
  EXPECT_EQ(r.find("A"), nullptr);
  EXPECT_EQ(r.automatic_type(), nullptr);
  ASSERT_TRUE(r.register_type(test_type("B")).ok());
  ASSERT_TRUE(r.register_type(test_type("A", /*automatic=*/true)).ok());
  ASSERT_NE(r.find("A"), nullptr);
  EXPECT_EQ(r.automatic_type(), r.find("A"));
  EXPECT_EQ(r.type_names(), (std::vector<std::string>{"A", "B"}));
}

TEST(Registry, RefusesIncompleteDuplicateAndSecondAutomaticTypes) {
  ConnectorRegistry r;
  ConnectorType no_create = test_type("X");
  no_create.create = nullptr;
  EXPECT_EQ(r.register_type(no_create).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(r.register_type(test_type("")).code(), StatusCode::kInvalidArgument);
  ASSERT_TRUE(r.register_type(test_type("A", true)).ok());
  Status dup = r.register_type(test_type("A"));
  EXPECT_NE(dup.message().find("already registered"), std::string::npos) << dup.ToString();
  Status second = r.register_type(test_type("B", true));
  EXPECT_NE(second.message().find("automatic"), std::string::npos) << second.ToString();
  EXPECT_EQ(r.find("B"), nullptr);
}

// vllm-omni renamed MooncakeConnector to MooncakeStoreConnector: a type may have aliases.
TEST(Registry, AliasesFindTheTypeAndAreNotListed) {
  ConnectorRegistry r;
  ConnectorType t = test_type("Store");
  t.aliases = {"StoreConnector"};
  ASSERT_TRUE(r.register_type(t).ok());
  ASSERT_NE(r.find("StoreConnector"), nullptr);
  EXPECT_EQ(r.find("StoreConnector")->name, "Store");
  EXPECT_EQ(r.type_names(), (std::vector<std::string>{"Store"}));
  Status taken = r.register_type(test_type("StoreConnector"));
  EXPECT_EQ(taken.code(), StatusCode::kInvalidArgument);
  ConnectorType clash = test_type("Other");
  clash.aliases = {"Store"};
  EXPECT_NE(r.register_type(clash).message().find("its alias 'Store' is already registered"),
            std::string::npos);
  EXPECT_EQ(r.find("Other"), nullptr);  // refused whole
}

TEST(Registry, UnknownTypeNamesTheRegisteredOnes) {
  ConnectorRegistry r;
  ASSERT_TRUE(r.register_type(test_type("A")).ok());
  auto t = r.resolve({"Nope", Value(), ""});
  ASSERT_FALSE(t.ok());
  EXPECT_EQ(t.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(t.status().message().find("unknown connector type 'Nope'; available: A"),
            std::string::npos)
      << t.status().ToString();
}

TEST(Registry, ValidateReportsFieldErrorsOfTheType) {
  ConnectorRegistry r;
  ASSERT_TRUE(r.register_type(test_type("A")).ok());
  EXPECT_TRUE(r.validate({"A", map({{"size", Value(5)}}), ""}).ok());
  Status st = r.validate({"A", map({{"size", Value(500)}, {"colour", Value("red")}}), ""});
  EXPECT_EQ(st.code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(st.message(), "A extra: size: want an integer in [1, 100], got 500");
  // A key the type does not read is kept and ignored, not an error (vllm-omni's codec keys).
  EXPECT_TRUE(r.validate({"A", map({{"size", Value(5)}, {"colour", Value("red")}}), ""}).ok());
}

TEST(Registry, MissingPluginLibraryIsAnErrorThatNamesIt) {
  ConnectorRegistry r;
  Status st = r.load_plugin("/nonexistent/libnothing.so");
  EXPECT_EQ(st.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(st.message().find("cannot load connector plugin /nonexistent/libnothing.so"),
            std::string::npos)
      << st.ToString();
  auto t = r.resolve({"Nope", Value(), "/nonexistent/libnothing.so"});
  ASSERT_FALSE(t.ok());
  EXPECT_NE(t.status().message().find("libnothing.so"), std::string::npos) << t.status().ToString();
}

TEST(ExtraReader, ReadsKnownKeysAndReportsEachProblemByKey) {
  Value extra = map({{"n", Value("42")},
                     {"m", Value("42")},
                     {"s", Value("")},
                     {"t", Value(7)},
                     {"k", Value(1)},
                     {"odd", Value(true)}});
  ExtraReader r(extra);
  uint64_t n = 0, m = 9;
  std::string s = "keep", t = "keep";
  r.integer("n", 0, 100, &n);                       // a string of digits counts
  r.integer("m", 0, 100, &m, /*digits_ok=*/false);  // ... unless digits_ok is false
  r.string("s", &s);                                // empty: refused
  r.string("t", &t);                                // not a string
  r.known("k");                                     // read elsewhere
  r.integer("absent", 0, 1, &n);
  EXPECT_TRUE(r.has("odd"));
  EXPECT_FALSE(r.has("absent"));
  FieldErrors errors = r.finish();
  EXPECT_EQ(n, 42u);
  EXPECT_EQ(m, 9u);
  EXPECT_EQ(s, "keep");
  ASSERT_EQ(errors.size(), 4u);
  EXPECT_EQ(errors[0].key, "m");
  EXPECT_EQ(errors[0].kind, FieldError::Kind::kBadValue);
  EXPECT_EQ(errors[0].message, "m: want an integer in [0, 100], got string");
  EXPECT_EQ(errors[1].key, "s");
  EXPECT_EQ(errors[2].key, "t");
  EXPECT_EQ(errors[3].key, "odd");
  EXPECT_EQ(errors[3].kind, FieldError::Kind::kUnknownKey);
  EXPECT_EQ(errors[3].message, "unknown key 'odd' (known: n, m, s, t, k, absent)");
}

TEST(ExtraReader, NilIsNoSettingsAndANonMapIsOneError) {
  ExtraReader none{Value()};
  EXPECT_TRUE(none.finish().empty());
  ExtraReader list{Value(Value::List{Value(1)})};
  FieldErrors errors = list.finish();
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_EQ(errors[0].key, "");
  EXPECT_EQ(errors[0].message, "want a map of settings, got list");
}

}  // namespace
}  // namespace omniconn
