#pragma once
// Time as the protocol cores see it. Cores never read a clock: the Asio shell
// (or the simulator) passes `now` in, so tests drive time by hand.
#include <chrono>
#include <cstdint>

namespace rg {

using Clock = std::chrono::steady_clock;
using Time = Clock::time_point;
using Duration = Clock::duration;

using std::chrono::milliseconds;
using std::chrono::microseconds;

inline std::int64_t to_ms(Duration d) {
  return std::chrono::duration_cast<milliseconds>(d).count();
}
inline std::int64_t to_us(Duration d) {
  return std::chrono::duration_cast<microseconds>(d).count();
}

}  // namespace rg
