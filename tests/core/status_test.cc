#include "omniconn/status.h"

#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <utility>

namespace omniconn {
namespace {

TEST(StatusTest, DefaultIsOk) {
  Status st;
  EXPECT_TRUE(st.ok());
  EXPECT_EQ(st.code(), StatusCode::kOk);
  EXPECT_EQ(st.message(), "");
  EXPECT_EQ(st.ToString(), "ok");
  EXPECT_TRUE(Status::Ok().ok());
}

TEST(StatusTest, FactoriesSetCodeAndMessage) {
  const std::pair<Status, StatusCode> cases[] = {
      {Status::InvalidArgument("m"), StatusCode::kInvalidArgument},
      {Status::NotFound("m"), StatusCode::kNotFound},
      {Status::Timeout("m"), StatusCode::kTimeout},
      {Status::ResourceExhausted("m"), StatusCode::kResourceExhausted},
      {Status::Corrupt("m"), StatusCode::kCorrupt},
      {Status::Unavailable("m"), StatusCode::kUnavailable},
      {Status::Cancelled("m"), StatusCode::kCancelled},
      {Status::Internal("m"), StatusCode::kInternal},
  };
  for (const auto& [st, code] : cases) {
    EXPECT_FALSE(st.ok());
    EXPECT_EQ(st.code(), code);
    EXPECT_EQ(st.message(), "m");
  }
}

TEST(StatusTest, CodeNames) {
  EXPECT_EQ(status_code_name(StatusCode::kOk), "ok");
  EXPECT_EQ(status_code_name(StatusCode::kInvalidArgument), "invalid argument");
  EXPECT_EQ(status_code_name(StatusCode::kNotFound), "not found");
  EXPECT_EQ(status_code_name(StatusCode::kTimeout), "timeout");
  EXPECT_EQ(status_code_name(StatusCode::kResourceExhausted), "resource exhausted");
  EXPECT_EQ(status_code_name(StatusCode::kCorrupt), "corrupt");
  EXPECT_EQ(status_code_name(StatusCode::kUnavailable), "unavailable");
  EXPECT_EQ(status_code_name(StatusCode::kCancelled), "cancelled");
  EXPECT_EQ(status_code_name(StatusCode::kInternal), "internal");
  EXPECT_EQ(status_code_name(static_cast<StatusCode>(200)), "unknown");
}

TEST(StatusTest, ConstructingWithOkCodeIsOk) {
  Status st(StatusCode::kOk, "ignored");
  EXPECT_TRUE(st.ok());
  EXPECT_EQ(st.message(), "");
}

TEST(StatusTest, ToString) {
  EXPECT_EQ(Status::Timeout("no payload on edge 0->1 within 100 ms").ToString(),
            "timeout: no payload on edge 0->1 within 100 ms");
  EXPECT_EQ(Status::Corrupt("bad magic").ToString(), "corrupt: bad magic");
}

TEST(StatusTest, WithContext) {
  Status st = Status::NotFound("key x");
  Status wrapped = st.WithContext("get");
  EXPECT_EQ(wrapped.code(), StatusCode::kNotFound);
  EXPECT_EQ(wrapped.message(), "get: key x");
  EXPECT_EQ(st.message(), "key x");  // original untouched
  EXPECT_TRUE(Status::Ok().WithContext("ctx").ok());
  EXPECT_EQ(wrapped.WithContext("outer").ToString(), "not found: outer: get: key x");
}

TEST(StatusTest, CopyAndMove) {
  Status a = Status::Unavailable("down");
  Status b = a;  // copy
  EXPECT_EQ(b.code(), StatusCode::kUnavailable);
  EXPECT_EQ(b.message(), "down");
  EXPECT_EQ(a.message(), "down");

  Status c;
  c = a;  // copy-assign
  EXPECT_EQ(c.ToString(), "unavailable: down");
  c = Status::Ok();
  EXPECT_TRUE(c.ok());
  Status& self = c;
  c = self;  // self-assignment
  EXPECT_TRUE(c.ok());
  Status& alias = a;
  a = alias;  // self-assignment of a non-OK status
  EXPECT_EQ(a.message(), "down");

  Status d = std::move(a);
  EXPECT_EQ(d.message(), "down");
  Status e;
  e = std::move(d);
  EXPECT_EQ(e.code(), StatusCode::kUnavailable);
}

TEST(StatusResultTest, HoldsValue) {
  Result<int> r = 42;
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(r.status().ok());
  EXPECT_EQ(r.value(), 42);
  EXPECT_EQ(*r, 42);
  *r = 7;
  EXPECT_EQ(r.value(), 7);

  Result<std::string> s = std::string("hello");
  EXPECT_EQ(s->size(), 5u);
  std::string moved = std::move(s).value();
  EXPECT_EQ(moved, "hello");
}

TEST(StatusResultTest, HoldsStatus) {
  Result<int> r = Status::NotFound("nope");
  EXPECT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kNotFound);
  EXPECT_EQ(r.status().message(), "nope");
}

TEST(StatusResultTest, OkStatusBecomesInternalError) {
  Result<int> r = Status::Ok();
  EXPECT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kInternal);
}

TEST(StatusResultTest, MoveOnlyValue) {
  Result<std::unique_ptr<int>> r = std::make_unique<int>(5);
  ASSERT_TRUE(r.ok());
  std::unique_ptr<int> p = std::move(r).value();
  EXPECT_EQ(*p, 5);
}

Status fail_if(bool fail) {
  return fail ? Status::Cancelled("stop") : Status::Ok();
}

Status run_steps(bool fail_second, int* steps) {
  OMNICONN_RETURN_IF_ERROR(fail_if(false));
  ++*steps;
  OMNICONN_RETURN_IF_ERROR(fail_if(fail_second));
  ++*steps;
  return Status::Ok();
}

Result<int> parse_positive(int v) {
  if (v <= 0) return Status::InvalidArgument("not positive: " + std::to_string(v));
  return v;
}

Result<int> sum_positive(int a, int b) {
  OMNICONN_ASSIGN_OR_RETURN(int x, parse_positive(a));
  OMNICONN_ASSIGN_OR_RETURN(const int y, parse_positive(b));
  return x + y;
}

Status assign_existing(int v, int* out) {
  int tmp = 0;
  OMNICONN_ASSIGN_OR_RETURN(tmp, parse_positive(v));
  *out = tmp;
  return Status::Ok();
}

TEST(StatusMacrosTest, ReturnIfError) {
  int steps = 0;
  EXPECT_TRUE(run_steps(false, &steps).ok());
  EXPECT_EQ(steps, 2);
  steps = 0;
  Status st = run_steps(true, &steps);
  EXPECT_EQ(st.code(), StatusCode::kCancelled);
  EXPECT_EQ(steps, 1);
}

TEST(StatusMacrosTest, AssignOrReturn) {
  Result<int> ok = sum_positive(2, 3);
  ASSERT_TRUE(ok.ok());
  EXPECT_EQ(*ok, 5);
  Result<int> bad = sum_positive(2, -1);
  EXPECT_EQ(bad.status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(bad.status().message(), "not positive: -1");

  int out = 0;
  EXPECT_TRUE(assign_existing(9, &out).ok());
  EXPECT_EQ(out, 9);
  EXPECT_FALSE(assign_existing(0, &out).ok());
  EXPECT_EQ(out, 9);
}

}  // namespace
}  // namespace omniconn
