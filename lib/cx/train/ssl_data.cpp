#include "cx/train/ssl_data.hpp"

#include <sys/stat.h>

#include <condition_variable>
#include <deque>
#include <exception>
#include <mutex>
#include <thread>
#include <utility>

#include "cx/cli/error.hpp"
#include "cx/io/stream.hpp"
#include "cx/random/rng.hpp"
#include "cx/train/finetune.hpp"
#include "cx/util/ordered_pool.hpp"

namespace cx::train {

namespace {

constexpr const char* kPositionFormat = "cx-ssl-position";

// Where the feed stands: what a position stores besides the batch count.
struct FeedState {
  std::int64_t pass = 0, read = 0, emitted = 0;
};

// One kept record on its way from the stream to the crops.
struct Pending {
  std::string key, where, field;  // where: the stream's name
  std::string bytes;              // the encoded image
  std::int64_t pass = 0, index = 0;
  FeedState after;                // the feed's state once this record was given
  std::exception_ptr error;       // the feed failed here: the worker rethrows it (see produce)
};

// A stream that can be opened again for another pass: a regular file (not "-", a pipe or a FIFO).
// A path that cannot be examined is left to the reader, whose error names it.
bool rereadable(const std::string& path) {
  if (path == "-") return false;
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return true;
  return S_ISREG(st.st_mode);
}

std::string joined(const std::vector<std::string>& inputs) {
  std::string s;
  for (const auto& i : inputs) s += (s.empty() ? "" : ", ") + (i == "-" ? std::string("standard input") : i);
  return s;
}

// The records of the inputs through the shard filter and the shuffle buffer, one thread at a time.
class Feed {
 public:
  Feed(std::vector<std::string> inputs, const SslLoaderOptions& o) : inputs_(std::move(inputs)), o_(o) {
    for (const auto& i : inputs_) rereadable_ = rereadable_ && rereadable(i);
  }

  FeedState state() const { return {pass_, read_, emitted_}; }

  // The next record for this rank; false at the end of the data (only for inputs read once).
  bool pull(Pending& out) {
    for (;;) {
      if (next_in_pass(out)) return true;
      if (emitted_ == 0) {
        throw Error(at(joined(inputs_), o_.world_size > 1 ? "no records for rank " + std::to_string(o_.rank) + " of " +
                                                                std::to_string(o_.world_size)
                                                          : std::string("no records")));
      }
      if (!rereadable_) return false;
      start_pass(pass_ + 1);
    }
  }

  // Back to the start of s.pass, then the pass's records replayed until s.emitted were given.
  void seek(const FeedState& s) {
    if (s.pass < 0 || s.read < 0 || s.emitted < 0 || s.emitted > s.read) throw Error("data position: invalid counts");
    if (s.pass > 0 && !rereadable_)
      throw Error(at(joined(inputs_), "cannot continue in pass " + std::to_string(s.pass) +
                                          ": an input that can be read only once (standard input, a pipe) has one pass"));
    start_pass(s.pass);
    Pending skip;
    while (emitted_ < s.emitted) {
      if (!next_in_pass(skip))
        throw Error(at(joined(inputs_), "the data position lies past the end of the stream (" + std::to_string(s.emitted) +
                                            " records given in pass " + std::to_string(s.pass) + ", the stream has " +
                                            std::to_string(emitted_) + " for this rank): not the stream it was saved on"));
    }
    if (read_ != s.read)
      throw Error(at(joined(inputs_), "the data position does not match the stream (" + std::to_string(read_) +
                                          " records read where the position says " + std::to_string(s.read) +
                                          "): not the stream it was saved on, or other loader options"));
  }

 private:
  void start_pass(std::int64_t pass) {
    pass_ = pass;
    read_ = emitted_ = 0;
    input_ = 0;
    reader_.reset();
    pass_done_ = false;
    buffer_.clear();
  }

  // The next record of the inputs in this pass; false at the pass's end.
  bool read_record(io::Record& r) {
    while (!pass_done_) {
      if (!reader_) {
        if (input_ == inputs_.size()) {
          pass_done_ = true;
          break;
        }
        reader_ = io::StreamReader::open(inputs_[input_]);
      }
      if (reader_->next(r)) return true;
      reader_.reset();
      ++input_;
    }
    return false;
  }

  void fill() {
    const auto cap = static_cast<std::size_t>(o_.shuffle_buffer);
    io::Record r;
    while (buffer_.size() < cap && read_record(r)) {
      const std::int64_t index = read_++;
      if (index % o_.world_size != o_.rank) continue;
      const io::Field* img = r.image();
      if (!img) throw Error(at(reader_->where(), at(r.key, "no image field (png, jpg) to pretrain on")));
      Pending p;
      p.key = r.key;
      p.where = reader_->where();
      p.field = img->name;
      p.bytes = std::move(r.find(img->name)->data);
      p.pass = pass_;
      p.index = index;
      buffer_.push_back(std::move(p));
    }
  }

  bool next_in_pass(Pending& out) {
    fill();
    if (buffer_.empty()) return false;
    const auto counter = static_cast<std::uint64_t>(emitted_) * static_cast<std::uint64_t>(o_.world_size) +
                         static_cast<std::uint64_t>(o_.rank);
    auto rng = ssl_shuffle_rng(o_.seed, pass_, counter);
    const auto j = static_cast<std::size_t>(rng.below(buffer_.size()));
    out = std::move(buffer_[j]);
    if (j + 1 != buffer_.size()) buffer_[j] = std::move(buffer_.back());
    buffer_.pop_back();
    ++emitted_;
    out.after = state();
    return true;
  }

  std::vector<std::string> inputs_;
  const SslLoaderOptions& o_;
  bool rereadable_ = true;
  std::int64_t pass_ = 0, read_ = 0, emitted_ = 0;
  std::size_t input_ = 0;
  std::unique_ptr<io::StreamReader> reader_;
  bool pass_done_ = false;
  std::vector<Pending> buffer_;
};

MultiCrops crops_of(const Pending& p, const MultiCropOptions& crops, std::uint64_t seed) {
  if (p.error) std::rethrow_exception(p.error);
  Image gray = decode_gray8(p.bytes, at(p.where, p.key + "." + p.field), false);
  auto rng = ssl_augment_rng(seed, p.pass, p.index);
  return multicrop(gray, crops, rng);
}

// Collates records' crops into one batch, crop-major.
class Collator {
 public:
  explicit Collator(const SslLoaderOptions& o) : o_(o) {}
  // True when the batch became full: then `batch` and `after` hold it, and the collator starts anew.
  bool add(const Pending& p, const MultiCrops& c) {
    const std::int64_t B = o_.batch_size, G = o_.crops.global_size, L = o_.crops.local_size, n = o_.crops.local_number;
    if (filled_ == 0) {
      cur_ = SslBatch{};
      cur_.global = torch::empty({2 * B, 3, G, G}, torch::kFloat32);
      cur_.local = torch::empty({n * B, 3, L, L}, torch::kFloat32);
      cur_.pass = p.pass;
      cur_.keys.reserve(static_cast<std::size_t>(B));
    }
    for (std::int64_t k = 0; k < 2; ++k) cur_.global[k * B + filled_].copy_(c.global[k]);
    for (std::int64_t k = 0; k < n; ++k) cur_.local[k * B + filled_].copy_(c.local[k]);
    cur_.keys.push_back(p.key);
    if (++filled_ < B) return false;
    filled_ = 0;
    batch = std::move(cur_);
    after = p.after;
    return true;
  }
  SslBatch batch;
  FeedState after;

 private:
  const SslLoaderOptions& o_;
  SslBatch cur_;
  std::int64_t filled_ = 0;
};

struct Stopped {};  // unwinds the producer when the loader stops it

}  // namespace

struct SslLoader::Impl {
  SslLoaderOptions o;
  Feed feed;
  FeedState given;             // after the last batch given (or the position sought)
  std::int64_t batches = 0;    // batches given since the start of training

  // The producer thread (threads >= 1): runs the ordered pool, hands full batches over.
  std::mutex m;
  std::condition_variable space, ready;
  struct Ready {
    SslBatch batch;
    FeedState after;
  };
  std::deque<Ready> queue;
  bool stop = false, done = false;
  std::exception_ptr error;
  std::thread producer;
  bool started = false;

  Impl(std::vector<std::string> inputs, SslLoaderOptions options) : o(std::move(options)), feed(std::move(inputs), o) {}
  ~Impl() { halt(); }

  void halt() {
    if (!started) {
      error = nullptr;
      return;
    }
    {
      std::lock_guard<std::mutex> lk(m);
      stop = true;
    }
    space.notify_all();
    producer.join();
    started = false;
    stop = done = false;
    error = nullptr;
    queue.clear();
  }

  void start() {
    started = true;
    producer = std::thread([this] { produce(); });
  }

  void produce() {
    try {
      Collator collator(o);
      bool failed = false;
      util::run_ordered<Pending, MultiCrops>(
          o.threads, static_cast<std::size_t>(2 * o.threads),
          [&](Pending& p) {
            {
              std::lock_guard<std::mutex> lk(m);
              if (stop) throw Stopped{};
            }
            if (failed) return false;
            // A failure of the feed (a bad stream or record) travels as an item whose work throws, so
            // the batches completed by the records pulled before it are still handed over, in order,
            // whatever the thread count: the same batches as the caller's thread gives without workers.
            try {
              return feed.pull(p);
            } catch (...) {
              p = Pending{};
              p.error = std::current_exception();
              failed = true;
              return true;
            }
          },
          [&](const Pending& p) { return crops_of(p, o.crops, o.seed); },
          [&](Pending& p, MultiCrops& c) {
            if (!collator.add(p, c)) return;
            std::unique_lock<std::mutex> lk(m);
            space.wait(lk, [&] { return stop || queue.size() < static_cast<std::size_t>(o.prefetch); });
            if (stop) throw Stopped{};
            queue.push_back({std::move(collator.batch), collator.after});
            lk.unlock();
            ready.notify_all();
          });
    } catch (const Stopped&) {
    } catch (...) {
      std::lock_guard<std::mutex> lk(m);
      error = std::current_exception();
    }
    {
      std::lock_guard<std::mutex> lk(m);
      done = true;
    }
    ready.notify_all();
  }

  bool next_sync(SslBatch& batch) {
    // As with workers, a failure is final: later calls throw it again rather than read past it.
    if (error) std::rethrow_exception(error);
    try {
      Collator collator(o);
      Pending p;
      while (feed.pull(p)) {
        if (collator.add(p, crops_of(p, o.crops, o.seed))) {
          batch = std::move(collator.batch);
          given = collator.after;
          ++batches;
          return true;
        }
      }
      return false;
    } catch (...) {
      error = std::current_exception();
      throw;
    }
  }

  bool next(SslBatch& batch) {
    if (o.threads < 1) return next_sync(batch);
    if (!started) start();
    std::unique_lock<std::mutex> lk(m);
    ready.wait(lk, [&] { return !queue.empty() || done; });
    if (queue.empty()) {
      if (error) std::rethrow_exception(error);
      return false;
    }
    Ready r = std::move(queue.front());
    queue.pop_front();
    lk.unlock();
    space.notify_all();
    batch = std::move(r.batch);
    given = r.after;
    ++batches;
    return true;
  }
};

SslLoader::SslLoader(std::vector<std::string> inputs, SslLoaderOptions options) {
  if (inputs.empty()) throw UsageError("no input streams");
  if (options.batch_size < 1) throw UsageError("batch size must be at least 1");
  if (options.shuffle_buffer < 1) throw UsageError("shuffle buffer must be at least 1");
  if (options.threads < 0) throw UsageError("threads must be at least 0");
  if (options.prefetch < 1) throw UsageError("prefetch must be at least 1");
  if (options.world_size < 1 || options.rank < 0 || options.rank >= options.world_size)
    throw UsageError("rank " + std::to_string(options.rank) + " of world size " + std::to_string(options.world_size) +
                     ": expected 0 <= rank < world size");
  check_multicrop_options(options.crops);
  impl_ = std::make_unique<Impl>(std::move(inputs), std::move(options));
}

SslLoader::~SslLoader() = default;

bool SslLoader::next(SslBatch& batch) { return impl_->next(batch); }

nlohmann::json SslLoader::position() const {
  const Impl& i = *impl_;
  return {{"format", kPositionFormat},
          {"pass", i.given.pass},
          {"read", i.given.read},
          {"emitted", i.given.emitted},
          {"batches", i.batches},
          {"seed", i.o.seed},
          {"rank", i.o.rank},
          {"world_size", i.o.world_size},
          {"shuffle_buffer", i.o.shuffle_buffer}};
}

void SslLoader::seek(const nlohmann::json& position) {
  Impl& i = *impl_;
  FeedState s;
  std::int64_t batches = 0;
  try {
    if (!position.is_object() || position.value("format", "") != kPositionFormat) throw Error("not a cx-ssl-position");
    auto agree = [&](const char* key, auto mine) {
      const auto theirs = position.at(key).get<decltype(mine)>();
      if (theirs != mine)
        throw Error(std::string("saved with ") + key + " " + std::to_string(theirs) + ", this loader has " + std::to_string(mine));
    };
    agree("seed", i.o.seed);
    agree("rank", i.o.rank);
    agree("world_size", i.o.world_size);
    agree("shuffle_buffer", i.o.shuffle_buffer);
    s.pass = position.at("pass").get<std::int64_t>();
    s.read = position.at("read").get<std::int64_t>();
    s.emitted = position.at("emitted").get<std::int64_t>();
    batches = position.at("batches").get<std::int64_t>();
    if (batches < 0) throw Error("negative batch count");
  } catch (const nlohmann::json::exception& e) {
    throw Error(std::string("data position: ") + e.what());
  } catch (const Error& e) {
    const std::string what = e.what();
    throw Error(what.rfind("data position", 0) == 0 ? what : "data position: " + what);
  }
  i.halt();
  i.feed.seek(s);
  i.given = s;
  i.batches = batches;
}

}  // namespace cx::train
