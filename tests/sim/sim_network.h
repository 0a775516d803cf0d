#pragma once
// Simulated time and network for the simulation tests (tests/sim/*), which
// drive protocol cores (membership now; the HA agent and quorum regions next)
// on one thread, without sockets or clocks.
//
// Determinism: everything random comes from one seeded std::mt19937_64 the
// test owns and passes in, every queue is ordered by (time, sequence), and no
// unordered container is iterated. The same seed replays the same run, so a
// failing test prints its seed and the seed reproduces the failure.
//
// The pieces:
//   SimClock        the one source of `now`; only moves forward.
//   SimTimers       callbacks due at a time (a node's tick, a probe deadline).
//   SimNetwork<Msg> messages between node ids: random delay, random loss,
//                   duplicates, very late messages, partitions, one-way
//                   loss, crashed nodes and paused ones (delivered late).
//   NodeClock       a node's own clock, running at its own rate.
//   run_until()     interleaves deliveries and timers in time order.
//
// Typical use:
//   std::mt19937_64 rng(seed);
//   SimClock clock;
//   SimTimers timers;
//   SimNetwork<Wire> net(clock, rng);
//   net.set_delay(0ms, 20ms); net.set_loss(0.1);
//   timers.at(clock.now() + 100ms, [&] { ...; net.send("n1", "n2", hb); });
//   run_until(clock.now() + 5s, clock, net, timers,
//             [&](const NodeId& to, const NodeId& from, Wire& msg) { ... });
#include <algorithm>
#include <cassert>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <utility>
#include <cstdlib>
#include <vector>

#include "common/clock.h"
#include "common/ids.h"

namespace rg::sim {

// Random draws written out here rather than std::uniform_*_distribution,
// whose output differs between standard libraries: a seed then replays the
// same run with any compiler. The modulo bias over 2^64 is negligible.
inline std::uint64_t uniform(std::mt19937_64& rng, std::uint64_t lo, std::uint64_t hi) {
  assert(lo <= hi);
  std::uint64_t span = hi - lo + 1;
  return span == 0 ? rng() : lo + rng() % span;  // span 0: the full 64-bit range
}
inline double uniform01(std::mt19937_64& rng) {
  return static_cast<double>(rng() >> 11) * 0x1.0p-53;
}
inline bool chance(std::mt19937_64& rng, double p) { return uniform01(rng) < p; }
inline Duration uniform_duration(std::mt19937_64& rng, Duration lo, Duration hi) {
  assert(lo <= hi);
  auto ticks = uniform(rng, 0, static_cast<std::uint64_t>((hi - lo).count()));
  return lo + Duration(static_cast<Duration::rep>(ticks));
}

// Simulated time. Starts an hour after the clock's epoch so that a default
// Time{} ("never") in the code under test is far in the past.
class SimClock {
 public:
  explicit SimClock(Time start = Time{} + std::chrono::hours(1)) : now_(start) {}
  Time now() const { return now_; }
  void advance(Duration d) {
    assert(d >= Duration::zero());
    now_ += d;
  }
  void advance_to(Time t) {
    assert(t >= now_ && "simulated time never goes back");
    now_ = t;
  }

 private:
  Time now_;
};

// A node's own clock: local time runs at `rate` times simulated (real)
// time from the moment it was set. Protocol cores get local time; checks
// that compare nodes convert back to real time.
class NodeClock {
 public:
  NodeClock() = default;
  NodeClock(Time real_now, double rate) : rate_(rate), real0_(real_now), local0_(real_now) {}
  double rate() const { return rate_; }
  Time local(Time real) const {
    return local0_ + Duration(static_cast<Duration::rep>(static_cast<double>((real - real0_).count()) * rate_));
  }
  Time real(Time local) const {
    return real0_ + Duration(static_cast<Duration::rep>(static_cast<double>((local - local0_).count()) / rate_));
  }
  // A local duration as real time.
  Duration real_span(Duration local) const {
    return Duration(static_cast<Duration::rep>(static_cast<double>(local.count()) / rate_ + 1));
  }

 private:
  double rate_ = 1.0;
  Time real0_{}, local0_{};
};

// Callbacks due at a given time, run in (time, order scheduled) order. A
// callback may schedule more. Cancelling is left to the callback: it checks
// whether it still matters (the node is still up, the probe still pending).
class SimTimers {
 public:
  using Callback = std::function<void()>;
  void at(Time when, Callback fn) { queue_.emplace(Key{when, next_seq_++}, std::move(fn)); }
  std::optional<Time> next_due() const {
    if (queue_.empty()) return std::nullopt;
    return queue_.begin()->first.first;
  }
  // Removes and returns the earliest callback; the caller advances the clock
  // to next_due() first, then runs it.
  Callback pop_next() {
    auto node = queue_.extract(queue_.begin());
    return std::move(node.mapped());
  }
  std::size_t size() const { return queue_.size(); }

 private:
  using Key = std::pair<Time, std::uint64_t>;
  std::map<Key, Callback> queue_;
  std::uint64_t next_seq_ = 0;
};

// How a message travels. A datagram (UDP: heartbeats, multicast) may be lost
// and overtaken. A stream message (TCP: probes, state transfer) is never lost
// at random and stays in order between a pair of nodes, but a partition or a
// down end still cuts it, as a broken connection would.
enum class Delivery { datagram, stream };

// Messages of type Msg between node ids, with the faults a real network and
// real processes add. Reordering comes from the random delay; duplicates,
// messages seconds late and one-way loss are switched on by the test. Rules:
//   - a down (crashed) node sends nothing and receives nothing (messages to
//     it are dropped when they arrive, so one that lands after it is back up
//     gets through, as a datagram to a restarted process would);
//   - a paused node's incoming messages wait and are delivered when it
//     resumes (its socket buffers held them);
//   - a blocked (from, to) pair loses everything in that one direction;
//   - a message between nodes on different sides of a partition is dropped,
//     whether the partition existed when it was sent or when it arrives;
//   - nodes named in no partition group are together in one more group.
template <class Msg>
class SimNetwork {
 public:
  struct Stats {
    std::uint64_t sent = 0, delivered = 0, lost = 0, cut = 0, down = 0, duplicated = 0, late = 0, held = 0;
  };
  // The delivery callback: on_deliver(const NodeId& to, const NodeId& from, Msg& msg),
  // called with the clock at the delivery time.

  SimNetwork(SimClock& clock, std::mt19937_64& rng) : clock_(clock), rng_(rng) {}

  void set_delay(Duration min, Duration max) {
    assert(Duration::zero() <= min && min <= max);
    min_delay_ = min;
    max_delay_ = max;
  }
  void set_loss(double probability) { loss_ = probability; }  // datagrams only
  // A datagram is sent twice with this probability (each copy its own delay).
  void set_duplicate(double probability) { duplicate_ = probability; }
  // With this probability a message (datagram or stream) takes up to `max`
  // instead of the usual delay: a message delivered seconds late. A stream
  // message still keeps its order, so it holds up the ones behind it.
  void set_long_delay(double probability, Duration max) {
    long_delay_ = probability;
    long_delay_max_ = max;
  }
  // One-way loss: nothing from `from` reaches `to` (the other way still works).
  void block(const NodeId& from, const NodeId& to) { blocked_.insert({from, to}); }
  // Everything from `from` to `to` takes `extra` longer (a slow link).
  void set_link_delay(const NodeId& from, const NodeId& to, Duration extra) { link_delay_[{from, to}] = extra; }
  void unblock_all() {
    blocked_.clear();
    link_delay_.clear();
  }
  // A paused (SIGSTOPped) process: messages that arrive meanwhile wait in its
  // socket buffers and are delivered, in order, the moment it resumes.
  void set_paused(const NodeId& id, bool paused) {
    if (paused) {
      paused_.insert(id);
      return;
    }
    paused_.erase(id);
    auto it = held_.find(id);
    if (it == held_.end()) return;
    for (auto& e : it->second) queue_.emplace(Key{clock_.now(), next_seq_++}, std::move(e));
    held_.erase(it);
  }
  bool is_paused(const NodeId& id) const { return paused_.contains(id); }
  void partition(const std::vector<std::vector<NodeId>>& groups) {
    side_.clear();
    for (std::size_t g = 0; g < groups.size(); ++g)
      for (const auto& id : groups[g]) side_[id] = static_cast<int>(g);
  }
  void heal() { side_.clear(); }
  void set_down(const NodeId& id, bool down) {
    if (down)
      down_.insert(id);
    else
      down_.erase(id);
  }
  bool is_down(const NodeId& id) const { return down_.contains(id); }
  // Whether a message from `a` could reach `b` right now (loss aside).
  bool can_reach(const NodeId& a, const NodeId& b) const {
    return !is_down(a) && !is_down(b) && !is_paused(a) && !is_paused(b) && side_of(a) == side_of(b) &&
           !blocked_.contains({a, b});
  }

  void send(const NodeId& from, const NodeId& to, Msg msg, Delivery how = Delivery::datagram) {
    ++stats_.sent;
    if (is_down(from)) {
      ++stats_.down;
      return;
    }
    if (side_of(from) != side_of(to) || blocked_.contains({from, to})) {
      ++stats_.cut;
      return;
    }
    if (how == Delivery::datagram && loss_ > 0 && chance(rng_, loss_)) {
      ++stats_.lost;
      return;
    }
    if (how == Delivery::datagram && duplicate_ > 0 && chance(rng_, duplicate_)) {
      ++stats_.duplicated;
      enqueue(from, to, msg, how);
    }
    enqueue(from, to, std::move(msg), how);
  }

  std::optional<Time> next_delivery() const {
    if (queue_.empty()) return std::nullopt;
    return queue_.begin()->first.first;
  }
  // Delivers the earliest message if it is due by `limit`, advancing the
  // clock to its arrival; false if there was none. A dropped one counts too.
  template <class F>
  bool deliver_next(Time limit, F&& on_deliver) {
    if (queue_.empty() || queue_.begin()->first.first > limit) return false;
    auto node = queue_.extract(queue_.begin());
    clock_.advance_to(node.key().first);
    Envelope& e = node.mapped();
    if (is_down(e.to)) {
      ++stats_.down;
    } else if (side_of(e.from) != side_of(e.to) || blocked_.contains({e.from, e.to})) {
      ++stats_.cut;
    } else if (is_paused(e.to)) {
      ++stats_.held;
      held_[e.to].push_back(std::move(e));
    } else {
      ++stats_.delivered;
      on_deliver(e.to, e.from, e.msg);
    }
    return true;
  }
  // Delivers everything due by `t` in arrival order, then sets the clock to `t`.
  template <class F>
  void deliver_until(Time t, F&& on_deliver) {
    while (deliver_next(t, on_deliver)) {
    }
    clock_.advance_to(t);
  }

  std::size_t in_flight() const { return queue_.size(); }
  const Stats& stats() const { return stats_; }

 private:
  struct Envelope {
    NodeId from, to;
    Msg msg;
  };
  using Key = std::pair<Time, std::uint64_t>;

  void enqueue(const NodeId& from, const NodeId& to, Msg msg, Delivery how) {
    Duration delay = uniform_duration(rng_, min_delay_, max_delay_);
    if (long_delay_ > 0 && chance(rng_, long_delay_)) {
      ++stats_.late;
      delay = uniform_duration(rng_, max_delay_, std::max(max_delay_, long_delay_max_));
    }
    if (auto it = link_delay_.find({from, to}); it != link_delay_.end()) delay += it->second;
    Time arrival = clock_.now() + delay;
    if (how == Delivery::stream) {
      Time& last = last_stream_arrival_[{from, to}];
      arrival = std::max(arrival, last);
      last = arrival;
    }
    queue_.emplace(Key{arrival, next_seq_++}, Envelope{from, to, std::move(msg)});
  }

  int side_of(const NodeId& id) const {
    auto it = side_.find(id);
    return it == side_.end() ? -1 : it->second;
  }

  SimClock& clock_;
  std::mt19937_64& rng_;
  Duration min_delay_ = Duration::zero();
  Duration max_delay_ = Duration::zero();
  double loss_ = 0;
  double duplicate_ = 0;
  double long_delay_ = 0;
  Duration long_delay_max_{};
  std::map<NodeId, int> side_;
  std::set<NodeId> down_;
  std::set<NodeId> paused_;
  std::set<std::pair<NodeId, NodeId>> blocked_;
  std::map<std::pair<NodeId, NodeId>, Duration> link_delay_;
  std::map<NodeId, std::vector<Envelope>> held_;
  std::map<std::pair<NodeId, NodeId>, Time> last_stream_arrival_;
  std::map<Key, Envelope> queue_;
  std::uint64_t next_seq_ = 0;
  Stats stats_;
};

// Runs deliveries and timers in time order until `end`, then sets the clock
// to `end`. At equal times messages go first: a timer at t sees what arrived at t.
template <class Msg, class F>
void run_until(Time end, SimClock& clock, SimNetwork<Msg>& net, SimTimers& timers,
               F&& on_deliver) {
  for (;;) {
    auto message_at = net.next_delivery();
    auto timer_at = timers.next_due();
    if (message_at && *message_at <= end && (!timer_at || *message_at <= *timer_at)) {
      net.deliver_next(end, on_deliver);
    } else if (timer_at && *timer_at <= end) {
      clock.advance_to(*timer_at);
      timers.pop_next()();
    } else {
      break;
    }
  }
  clock.advance_to(end);
}

// The seeds a simulation test runs: RG_SEED=S replays one, RG_SEEDS=N
// runs seeds 1..N, otherwise 1..default_count.
inline std::vector<std::uint64_t> seeds(std::size_t default_count) {
  if (const char* one = std::getenv("RG_SEED")) return {std::strtoull(one, nullptr, 0)};
  std::size_t count = default_count;
  if (const char* n = std::getenv("RG_SEEDS")) count = std::strtoull(n, nullptr, 0);
  std::vector<std::uint64_t> list;
  for (std::uint64_t s = 1; s <= count; ++s) list.push_back(s);
  return list;
}

}  // namespace rg::sim
