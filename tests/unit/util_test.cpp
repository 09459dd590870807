// lib/cx/util: the ordered worker pool (ordered_pool.hpp) and the string helpers (strings.hpp).
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <random>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "cx/util/ordered_pool.hpp"
#include "cx/util/strings.hpp"

using cx::util::run_ordered;

namespace {

// A result that counts how many are alive (moved-from ones do not count): the pool's memory bound.
std::atomic<int> g_live{0}, g_max_live{0};
struct Tracked {
  int value = -1;
  bool owns = false;
  explicit Tracked(int v) : value(v), owns(true) { note(++g_live); }
  Tracked(Tracked&& o) noexcept : value(o.value), owns(o.owns) { o.owns = false; }
  Tracked& operator=(Tracked&& o) noexcept {
    if (owns) --g_live;
    value = o.value;
    owns = o.owns;
    o.owns = false;
    return *this;
  }
  Tracked(const Tracked&) = delete;
  ~Tracked() {
    if (owns) --g_live;
  }
  static void note(int now) {
    int prev = g_max_live.load();
    while (now > prev && !g_max_live.compare_exchange_weak(prev, now)) {
    }
  }
};

void sleep_us(int us) { std::this_thread::sleep_for(std::chrono::microseconds(us)); }

}  // namespace

// Random work times reorder completion; the sink still sees pull order, for every thread count, and
// never more than `window` items are between pull and sink (nor alive as results).
TEST(OrderedPool, KeepsPullOrderUnderRandomDelaysAndBoundsWhatIsInFlight) {
  for (int threads : {1, 2, 3, 8}) {
    for (std::size_t window : {std::size_t{1}, std::size_t{4}, std::size_t{16}}) {
      const int n = 200;
      int pulled = 0, sunk = 0;
      std::size_t max_in_flight = 0;
      std::atomic<int> busy{0}, max_busy{0};
      g_live = 0;
      g_max_live = 0;
      std::vector<int> order;
      std::vector<int> delay(n);
      std::mt19937 rng(static_cast<unsigned>(threads * 100 + window));
      for (int& d : delay) d = static_cast<int>(rng() % 400);
      run_ordered<int, Tracked>(
          threads, window,
          [&](int& i) {
            if (pulled == n) return false;
            i = pulled++;
            max_in_flight = std::max<std::size_t>(max_in_flight, static_cast<std::size_t>(pulled - sunk));
            return true;
          },
          [&](const int& i) {
            const int now = ++busy;
            int prev = max_busy.load();
            while (now > prev && !max_busy.compare_exchange_weak(prev, now)) {
            }
            sleep_us(delay[static_cast<std::size_t>(i)]);
            --busy;
            return Tracked(i * 10);
          },
          [&](int& i, Tracked& r) {
            EXPECT_EQ(r.value, i * 10);
            order.push_back(i);
            ++sunk;
          });
      ASSERT_EQ(order.size(), static_cast<std::size_t>(n)) << threads << " threads, window " << window;
      for (int i = 0; i < n; ++i) ASSERT_EQ(order[static_cast<std::size_t>(i)], i) << threads << "/" << window;
      const std::size_t bound = std::max<std::size_t>(window, static_cast<std::size_t>(threads));
      EXPECT_LE(max_in_flight, threads <= 1 ? 1u : bound) << threads << "/" << window;
      EXPECT_LE(static_cast<std::size_t>(g_max_live.load()), threads <= 1 ? 1u : bound) << threads << "/" << window;
      EXPECT_LE(max_busy.load(), threads);
      if (threads > 1 && window >= static_cast<std::size_t>(threads)) {
        EXPECT_GE(max_busy.load(), 2);
      }
      EXPECT_EQ(g_live.load(), 0);
    }
  }
}

// The first failing item in pull order is the one rethrown, whatever finished first; the items
// before it are sunk, none after it, and pulling stops soon.
TEST(OrderedPool, WorkExceptionStopsTheOthersAndIsRethrown) {
  for (int threads : {1, 2, 4}) {
    int pulled = 0;
    std::vector<int> sunk;
    std::atomic<int> started_after_failure{0};
    std::atomic<bool> failed{false};
    try {
      run_ordered<int, int>(
          threads, 8,
          [&](int& i) {
            if (pulled == 100000) return false;
            i = pulled++;
            return true;
          },
          [&](const int& i) {
            if (failed) ++started_after_failure;
            // Item 41 fails late, item 40 early: 40's error is the one to see.
            if (i == 41) throw std::runtime_error("item 41");
            if (i == 40) {
              sleep_us(20000);
              failed = true;
              throw std::runtime_error("item 40");
            }
            return i;
          },
          [&](int& i, int&) { sunk.push_back(i); });
      ADD_FAILURE() << "no exception with " << threads << " threads";
    } catch (const std::runtime_error& e) {
      EXPECT_EQ(std::string(e.what()), "item 40") << threads;
    }
    ASSERT_EQ(sunk.size(), 40u) << threads;
    for (int i = 0; i < 40; ++i) EXPECT_EQ(sunk[static_cast<std::size_t>(i)], i);
    EXPECT_LE(pulled, 40 + 8 + 1) << "pulling goes on after a failure";
    // Once item 40 failed no worker starts another (41 may already have started).
    EXPECT_LE(started_after_failure.load(), threads) << threads;
  }
}

TEST(OrderedPool, PullAndSinkExceptionsPropagateAndJoinTheWorkers) {
  int pulled = 0;
  auto pull = [&](int& i) {
    if (pulled == 1000) return false;
    i = pulled++;
    return true;
  };
  auto work = [](const int& i) { return std::make_unique<int>(i); };  // a move-only result
  EXPECT_THROW((run_ordered<int, std::unique_ptr<int>>(
                   3, 4, pull, work,
                   [](int& i, std::unique_ptr<int>& r) {
                     EXPECT_EQ(*r, i);
                     if (i == 10) throw std::logic_error("sink");
                   })),
               std::logic_error);
  EXPECT_LT(pulled, 20);
  pulled = 0;
  EXPECT_THROW((run_ordered<int, std::unique_ptr<int>>(
                   3, 4,
                   [&](int& i) {
                     if (pulled == 7) throw std::logic_error("pull");
                     i = pulled++;
                     return true;
                   },
                   work, [](int&, std::unique_ptr<int>&) {})),
               std::logic_error);
}

TEST(OrderedPool, EmptyInput) {
  int sunk = 0;
  run_ordered<int, int>(
      4, 8, [](int&) { return false; }, [](const int& i) { return i; }, [&](int&, int&) { ++sunk; });
  EXPECT_EQ(sunk, 0);
}

TEST(Strings, TrimLowerEndsWith) {
  EXPECT_EQ(cx::util::trim(" \t a b \r\n"), "a b");
  EXPECT_EQ(cx::util::lower("AbC"), "abc");
  EXPECT_TRUE(cx::util::ends_with_ci("x.CSV.GZ", ".csv.gz"));
  EXPECT_FALSE(cx::util::ends_with("x.csv", ".CSV"));
}
