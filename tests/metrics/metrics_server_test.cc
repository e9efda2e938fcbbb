// MetricsServer and scrape_metrics over real sockets on loopback.
#include "omniconn/metrics_server.h"

#include <gtest/gtest.h>

#include <atomic>

namespace omniconn {
namespace {

using namespace std::chrono_literals;

TEST(MetricsServer, ServesWhatRenderReturnsOnEachScrape) {
  std::atomic<int> calls{0};
  auto server = MetricsServer::start("127.0.0.1:0", [&] {
    return "# TYPE scrapes counter\nscrapes " + std::to_string(++calls) + "\n";
  });
  ASSERT_TRUE(server.ok()) << server.status().ToString();
  const std::string addr = (*server)->address();
  EXPECT_EQ(addr.rfind("127.0.0.1:", 0), 0u) << addr;
  EXPECT_NE(addr, "127.0.0.1:0");
  auto first = scrape_metrics(addr, 2s);
  ASSERT_TRUE(first.ok()) << first.status().ToString();
  EXPECT_EQ(*first, "# TYPE scrapes counter\nscrapes 1\n");
  auto second = scrape_metrics("http://" + addr + "/metrics", 2s);
  ASSERT_TRUE(second.ok()) << second.status().ToString();
  EXPECT_EQ(*second, "# TYPE scrapes counter\nscrapes 2\n");
  auto missing = scrape_metrics("http://" + addr + "/nothing", 2s);
  EXPECT_EQ(missing.status().code(), StatusCode::kUnavailable);
  EXPECT_NE(missing.status().message().find("404"), std::string::npos)
      << missing.status().ToString();
}

TEST(MetricsServer, AnAddressInUseOrMalformedIsAnError) {
  auto a = MetricsServer::start("127.0.0.1:0", [] { return std::string(); });
  ASSERT_TRUE(a.ok());
  auto b = MetricsServer::start((*a)->address(), [] { return std::string(); });
  EXPECT_EQ(b.status().code(), StatusCode::kUnavailable);
  EXPECT_NE(b.status().message().find((*a)->address()), std::string::npos);
  for (const char* bad : {"127.0.0.1", "127.0.0.1:99999", "127.0.0.1:x", ":9000"}) {
    auto c = MetricsServer::start(bad, [] { return std::string(); });
    EXPECT_EQ(c.status().code(), StatusCode::kInvalidArgument) << bad;
  }
}

TEST(MetricsServer, StopsAndTheAddressIsFreeAgain) {
  std::string addr;
  {
    auto s = MetricsServer::start("127.0.0.1:0", [] { return std::string("x 1\n"); });
    ASSERT_TRUE(s.ok());
    addr = (*s)->address();
    ASSERT_TRUE(scrape_metrics(addr, 2s).ok());
  }
  auto gone = scrape_metrics(addr, 2s);
  EXPECT_EQ(gone.status().code(), StatusCode::kUnavailable) << gone.status().ToString();
  auto again = MetricsServer::start(addr, [] { return std::string("y 1\n"); });
  ASSERT_TRUE(again.ok()) << again.status().ToString();
  EXPECT_EQ(*scrape_metrics(addr, 2s), "y 1\n");
}

TEST(ScrapeMetrics, RefusesWhatItCannotReach) {
  EXPECT_EQ(scrape_metrics("https://127.0.0.1:1/metrics", 1s).status().code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(scrape_metrics("127.0.0.1", 1s).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(scrape_metrics("127.0.0.1:0", 1s).status().code(), StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace omniconn
