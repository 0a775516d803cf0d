#include "grid/stream_receiver.h"

#include <algorithm>

namespace rg::grid {
namespace {
// Ranges kept per origin beyond the ack point; a receiver that far behind
// drops the oldest and relies on NAK/reset and reconciliation.
constexpr std::size_t kMaxRanges = 100000;
}  // namespace

StreamReceiver::Origin* StreamReceiver::get(const NodeId& origin, Incarnation inc) {
  auto& o = origins_[origin];
  if (inc < o.inc) return nullptr;  // a stale process
  if (inc > o.inc) o = Origin{inc};
  return &o;
}

void StreamReceiver::compact(Origin& o) {
  if (!o.started) return;
  while (!o.ranges.empty()) {
    auto it = o.ranges.begin();
    if (it->first > o.next) break;
    o.next = std::max(o.next, it->second);
    o.ranges.erase(it);
  }
}

void StreamReceiver::on_hello(const NodeId& origin, Incarnation inc, std::uint64_t start) {
  auto* o = get(origin, inc);
  if (!o) return;
  if (!o->started || start > o->next) {
    o->started = true;
    o->next = start;
    o->ranges.erase(o->ranges.begin(), o->ranges.lower_bound(start));
    // A range that straddles start still counts from start.
    compact(*o);
  }
}

bool StreamReceiver::on_data(const NodeId& origin, Incarnation inc, std::uint64_t first,
                             std::uint64_t count, Time) {
  auto* o = get(origin, inc);
  // A range that wraps past 2^64 cannot come from a real stream.
  if (!o || count == 0 || count > UINT64_MAX - first) return false;
  std::uint64_t end = first + count;
  if (o->started && end <= o->next) return true;  // duplicate: re-acknowledge
  std::uint64_t before = o->next;
  // Insert [first, end), merging with neighbours.
  auto it = o->ranges.upper_bound(first);
  if (it != o->ranges.begin()) {
    auto prev = std::prev(it);
    if (prev->second >= first) {
      first = prev->first;
      end = std::max(end, prev->second);
      o->ranges.erase(prev);
    }
  }
  while (it != o->ranges.end() && it->first <= end) {
    end = std::max(end, it->second);
    it = o->ranges.erase(it);
  }
  o->ranges[first] = end;
  if (o->ranges.size() > kMaxRanges) o->ranges.erase(o->ranges.begin());
  compact(*o);
  return o->started && o->next != before;
}

void StreamReceiver::on_reset(const NodeId& origin, Incarnation inc, std::uint64_t next) {
  auto* o = get(origin, inc);
  if (!o || !o->started || next <= o->next) return;
  o->next = next;
  compact(*o);
}

void StreamReceiver::forget(const NodeId& origin) { origins_.erase(origin); }

std::optional<std::uint64_t> StreamReceiver::ack_point(const NodeId& origin) const {
  auto it = origins_.find(origin);
  if (it == origins_.end() || !it->second.started) return std::nullopt;
  return it->second.next;
}

std::vector<StreamReceiver::Gap> StreamReceiver::gaps(Time now) {
  std::vector<Gap> out;
  for (auto& [id, o] : origins_) {
    if (!o.started || o.ranges.empty()) continue;
    if (now - o.nak_sent < nak_interval_) continue;
    auto first = o.ranges.begin();
    if (first->first <= o.next) continue;
    o.nak_sent = now;
    ++gaps_seen_;
    out.push_back(Gap{id, o.next, first->first});
  }
  return out;
}

}  // namespace rg::grid
