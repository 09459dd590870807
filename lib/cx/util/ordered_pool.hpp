#pragma once
// An ordered worker pool: items are pulled on the calling thread, worked on by `threads` workers,
// and handed to the sink on the calling thread in pull order, so the output does not depend on the
// thread count or on which worker finished first. At most `window` items are in flight (pulled,
// not yet sunk): memory does not grow with the input's length.
//
// Errors: an exception from work stops the workers (each finishes the item it holds, none starts
// another); the items pulled before the failed one are still sunk, in order, and then the failed
// item's exception is rethrown here, so with several failures it is always the first in pull
// order. An exception from pull or sink stops the workers the same way and propagates. With
// threads <= 1 everything runs on the calling thread, item by item.
//
//   run_ordered<std::int64_t, Record>(threads, 2 * threads,
//       [&](std::int64_t& i) { return next < count ? (i = next++, true) : false; },
//       [&](const std::int64_t& i) { return render(i); },
//       [&](std::int64_t& i, Record& r) { writer.write(r); });
#include <algorithm>
#include <condition_variable>
#include <cstddef>
#include <deque>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <queue>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

#include "cx/cli/error.hpp"
#include "cx/cli/log.hpp"

namespace cx::util {

template <class Item, class Result>
void run_ordered(int threads, std::size_t window, const std::function<bool(Item&)>& pull,
                 const std::function<Result(const Item&)>& work, const std::function<void(Item&, Result&)>& sink) {
  if (threads <= 1) {
    for (;;) {
      Item item{};
      if (!pull(item)) return;
      Result result = work(item);
      sink(item, result);
    }
  }
  window = std::max<std::size_t>(window, static_cast<std::size_t>(threads));

  struct Slot {
    Item item{};
    std::optional<Result> result;
    std::exception_ptr error;
    bool done = false;
  };
  std::mutex m;
  std::condition_variable job_ready, job_done;
  std::queue<std::shared_ptr<Slot>> jobs;
  bool stop = false;    // set by a failure or on leaving: workers start nothing more
  bool failed = false;  // a work call threw: the caller pulls nothing more

  auto worker = [&] {
    for (;;) {
      std::shared_ptr<Slot> s;
      {
        std::unique_lock<std::mutex> lk(m);
        job_ready.wait(lk, [&] { return stop || !jobs.empty(); });
        if (stop) return;
        s = std::move(jobs.front());
        jobs.pop();
      }
      std::optional<Result> result;
      std::exception_ptr error;
      try {
        result.emplace(work(s->item));
      } catch (...) {
        error = std::current_exception();
      }
      {
        std::lock_guard<std::mutex> lk(m);
        s->result = std::move(result);
        s->error = error;
        s->done = true;
        if (error) stop = failed = true;
      }
      job_done.notify_all();
      if (error) job_ready.notify_all();
    }
  };

  std::vector<std::thread> pool;
  // Stops and joins the workers however this function is left.
  struct Joiner {
    std::mutex& m;
    std::condition_variable& cv;
    bool& stop;
    std::vector<std::thread>& pool;
    ~Joiner() {
      {
        std::lock_guard<std::mutex> lk(m);
        stop = true;
      }
      cv.notify_all();
      for (auto& t : pool) t.join();
    }
  } joiner{m, job_ready, stop, pool};
  pool.reserve(static_cast<std::size_t>(threads));
  // The system may refuse threads (ulimit -u, memory): work on with those started, or fail
  // cleanly when none could be (a std::thread destroyed unjoined would call std::terminate).
  for (int i = 0; i < threads; ++i) {
    try {
      pool.emplace_back(worker);
    } catch (const std::system_error& e) {
      if (pool.empty()) throw cx::Error(std::string("cannot start a worker thread: ") + e.what());
      cx::log::warn("started " + std::to_string(pool.size()) + " of " + std::to_string(threads) +
                    " worker threads (" + e.what() + "); going on with those");
      break;
    }
  }

  std::deque<std::shared_ptr<Slot>> in_flight;
  bool more = true;
  for (;;) {
    while (more && in_flight.size() < window) {
      {
        std::lock_guard<std::mutex> lk(m);
        if (failed) break;
      }
      auto s = std::make_shared<Slot>();
      if (!pull(s->item)) {
        more = false;
        break;
      }
      in_flight.push_back(s);
      {
        std::lock_guard<std::mutex> lk(m);
        jobs.push(s);
      }
      job_ready.notify_one();
    }
    if (in_flight.empty()) return;
    std::shared_ptr<Slot> front = std::move(in_flight.front());
    in_flight.pop_front();
    {
      // Jobs are taken in pull order, so once a later one has failed every earlier one was
      // taken and will be done.
      std::unique_lock<std::mutex> lk(m);
      job_done.wait(lk, [&] { return front->done; });
    }
    if (front->error) std::rethrow_exception(front->error);
    sink(front->item, *front->result);
    // The result goes now, on this thread: the worker that made it may still hold the slot for a
    // moment, and the next pull must not find window + 1 results alive.
    {
      std::lock_guard<std::mutex> lk(m);
      front->result.reset();
    }
  }
}

}  // namespace cx::util
