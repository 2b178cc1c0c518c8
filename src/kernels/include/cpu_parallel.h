// What the CPU kernels (src/lif/kernels/lif_cpu.cc, src/fast_ops/kernels/fast_ops_cpu.cc) share: the thread
// limit (SNNMLP_NUM_THREADS), one persistent pool of helper threads with ParallelFor over it, and the float bit
// helpers that keep selects branch-free and vectorisable.
#ifndef SNN_MLP_CPU_PARALLEL_H_
#define SNN_MLP_CPU_PARALLEL_H_

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace cpu_parallel {

// ---------------------------------------------------------------- threading

// Threads a call may use: SNNMLP_NUM_THREADS, else all hardware threads.
inline int ThreadLimit() {
  int64_t wanted = static_cast<int64_t>(std::thread::hardware_concurrency());
  if (const char *env = std::getenv("SNNMLP_NUM_THREADS")) {
    const long requested = std::strtol(env, nullptr, 10);
    if (requested > 0) wanted = requested;
  }
  return static_cast<int>(std::max<int64_t>(1, wanted));
}

// A pool of helper threads started once and kept. Work is shared out dynamically: the calling thread claims
// tasks from an atomic counter like the helpers, and waits only for tasks a helper has claimed. So a call never
// waits for a helper to be scheduled (on a busy machine it may do all the work itself), and no thread is
// created per call (a thread start costs tens of microseconds, hundreds when the cores are busy: more than a
// whole kernel on the small tensors of the late stages).
class ThreadPool {
 public:
  // The pool is never destroyed: its threads block until the process exits, so no static destruction order or
  // exit-time join can hang.
  static ThreadPool &Instance() {
    static ThreadPool *pool = new ThreadPool(static_cast<int>(std::thread::hardware_concurrency()) - 1);
    return *pool;
  }

  // Runs task(i) for every i in [0, count) on the calling thread and at most `helpers` pool threads; false if a
  // task threw. A call made while another is running (MindSpore runs independent kernels concurrently) runs its
  // tasks alone instead of waiting.
  template <typename Task>
  bool Run(int64_t count, int helpers, Task task) {
    Job job;
    job.count = count;
    job.helpers = std::min<int>(helpers, static_cast<int>(workers_.size()));
    job.run = [&task](int64_t i) { task(i); };
    std::unique_lock<std::mutex> busy(busy_, std::try_to_lock);
    if (!busy.owns_lock() || job.helpers < 1) {
      Work(&job);
      return !job.failed;
    }
    {
      std::lock_guard<std::mutex> lock(mutex_);
      job_ = &job;
      ++generation_;
    }
    wake_.notify_all();
    Work(&job);
    std::unique_lock<std::mutex> lock(mutex_);
    job_ = nullptr;  // helpers waking from now on find nothing to do
    done_.wait(lock, [&job] { return job.active == 0; });
    return !job.failed;
  }

 private:
  struct Job {
    std::function<void(int64_t)> run;
    int64_t count = 0;
    int helpers = 0;
    int active = 0;  // helpers inside Work; guarded by mutex_
    std::atomic<int64_t> next{0};
    std::atomic<bool> failed{false};
  };

  explicit ThreadPool(int threads) {
    for (int t = 0; t < threads; ++t) workers_.emplace_back([this] { Serve(); });
    for (auto &worker : workers_) worker.detach();
  }

  static void Work(Job *job) {
    for (int64_t i = job->next.fetch_add(1); i < job->count; i = job->next.fetch_add(1)) {
      try {
        job->run(i);
      } catch (const std::exception &e) {
        std::fprintf(stderr, "snn_mlp kernel: %s\n", e.what());
        job->failed = true;
      }
    }
  }

  void Serve() {
    uint64_t seen = 0;
    std::unique_lock<std::mutex> lock(mutex_);
    for (;;) {
      wake_.wait(lock, [&] { return generation_ != seen; });
      seen = generation_;
      Job *job = job_;
      if (job == nullptr || job->active >= job->helpers) continue;
      ++job->active;
      lock.unlock();
      Work(job);
      lock.lock();
      if (--job->active == 0) done_.notify_all();
    }
  }

  std::vector<std::thread> workers_;
  std::mutex busy_;   // held by the call that owns the helpers
  std::mutex mutex_;  // guards job_, generation_ and Job::active
  std::condition_variable wake_, done_;
  Job *job_ = nullptr;
  uint64_t generation_ = 0;
};

// Runs body(begin, end) over [0, tasks) in chunks of contiguous tasks, on up to ThreadLimit() threads; false if a
// chunk threw. Chunks hold at least kMinElements of the `elements` the tasks cover: below that a hand-over costs
// more than it saves. Results must not depend on which thread runs a chunk (they do not: every kernel writes per
// task and reduces in task order).
template <typename Body>
bool ParallelFor(int64_t tasks, int64_t elements, Body body) {
  constexpr int64_t kMinElements = 1 << 14;
  const int threads = ThreadLimit();
  // A few chunks per thread, so a thread that starts late or is descheduled leaves little for the others.
  const int64_t chunks = std::min({tasks, std::max<int64_t>(1, elements / kMinElements), int64_t{4} * threads});
  if (threads == 1 || chunks <= 1) {
    try {
      if (tasks > 0) body(0, tasks);
    } catch (const std::exception &e) {  // an exception must not cross the kernel's C entry point
      std::fprintf(stderr, "snn_mlp kernel: %s\n", e.what());
      return false;
    }
    return true;
  }
  return ThreadPool::Instance().Run(chunks, threads - 1, [&](int64_t chunk) {
    body(chunk * tasks / chunks, (chunk + 1) * tasks / chunks);
  });
}

// ---------------------------------------------------------------- float bits

inline float BitsFloat(uint32_t u) {
  float f;
  std::memcpy(&f, &u, sizeof(f));
  return f;
}

inline uint32_t FloatBits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, sizeof(u));
  return u;
}

// condition ? if_true : if_false as bit masks: GCC will not vectorise a loop with float ?: or std::min/max
// (their NaN rules make them control flow), but it does vectorise this; and the fire decisions of the LIF scan
// are data-dependent coin flips, which a branch would mispredict half the time.
inline float Select(bool condition, float if_true, float if_false) {
  const uint32_t mask = 0u - static_cast<uint32_t>(condition);
  return BitsFloat((FloatBits(if_true) & mask) | (FloatBits(if_false) & ~mask));
}

inline uint32_t SelectBits(bool condition, uint32_t if_true, uint32_t if_false) {
  const uint32_t mask = 0u - static_cast<uint32_t>(condition);
  return (if_true & mask) | (if_false & ~mask);
}

}  // namespace cpu_parallel

#endif  // SNN_MLP_CPU_PARALLEL_H_
