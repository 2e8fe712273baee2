// Static-partition parallel loop over [0, n): chunk boundaries depend only on n and
// the thread count, so every result written per index is independent of threading.
#pragma once
#include <algorithm>
#include <cstdint>
#include <exception>
#include <thread>
#include <vector>

namespace lamfast {

// Calls body(begin, end, thread_index) on contiguous blocks; small ranges run inline.
template <class Body>
void parallel_for(int64_t n, int threads, int64_t min_per_thread, Body&& body) {
  if (n <= 0) return;
  const int64_t most = std::max<int64_t>(1, n / std::max<int64_t>(1, min_per_thread));
  const int t = static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(threads, most)));
  if (t == 1) {
    body(int64_t{0}, n, 0);
    return;
  }
  std::vector<std::thread> pool;
  std::vector<std::exception_ptr> errors(t);
  pool.reserve(t - 1);
  auto run = [&](int i) {
    const int64_t begin = n * i / t, end = n * (i + 1) / t;
    try {
      body(begin, end, i);
    } catch (...) {
      errors[i] = std::current_exception();
    }
  };
  for (int i = 1; i < t; ++i) pool.emplace_back(run, i);
  run(0);
  for (auto& th : pool) th.join();
  for (auto& e : errors)
    if (e) std::rethrow_exception(e);
}

}  // namespace lamfast
