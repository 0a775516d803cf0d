#pragma once
// A latency histogram with fixed bucket bounds, in the shape Prometheus
// expects (cumulative buckets, sum, count). Fixed bounds keep an
// observation O(buckets) with no allocation, cheap enough for every write.
#include <array>
#include <cstddef>
#include <cstdint>

#include "common/clock.h"

namespace rg::grid {

class LatencyHistogram {
 public:
  // Upper bounds in seconds; a write-through put on a healthy LAN takes
  // about a millisecond, a failover-delayed one seconds.
  static constexpr std::array<double, 14> kBounds = {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01,
                                                     0.025,  0.05,    0.1,    0.25,  0.5,    1.0,   5.0};

  void observe(Duration d) {
    double s = std::chrono::duration<double>(d).count();
    std::size_t i = 0;
    while (i < kBounds.size() && s > kBounds[i]) ++i;
    ++counts_[i];
    sum_ += s;
    ++count_;
  }
  // Observations at or below kBounds[i] (i == kBounds.size(): all of them).
  std::uint64_t cumulative(std::size_t i) const {
    std::uint64_t n = 0;
    for (std::size_t j = 0; j <= i && j < counts_.size(); ++j) n += counts_[j];
    return n;
  }
  double sum() const { return sum_; }
  std::uint64_t count() const { return count_; }

 private:
  std::array<std::uint64_t, kBounds.size() + 1> counts_{};  // last: above every bound
  double sum_ = 0;
  std::uint64_t count_ = 0;
};

}  // namespace rg::grid
