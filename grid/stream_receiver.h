#pragma once
// StreamReceiver: the receiving side of every other origin's stream.
//
// Writes are applied as soon as they arrive, in any order (merging is
// order-independent); this class only tracks which sequence numbers of each
// origin have arrived, so that it can acknowledge cumulatively (everything
// below `next` arrived) and ask for the gaps (NAK). An origin's stream is
// identified by its incarnation; a Hello says from which seq this node must
// acknowledge. Pure: no I/O, no clock.
#include <cstdint>
#include <map>
#include <optional>
#include <vector>

#include "common/clock.h"
#include "common/ids.h"

namespace rg::grid {

class StreamReceiver {
 public:
  explicit StreamReceiver(Duration nak_interval = milliseconds(20)) : nak_interval_(nak_interval) {}

  struct Gap {
    NodeId origin;
    std::uint64_t from = 0;  // [from, to)
    std::uint64_t to = 0;
  };

  // The origin (re)starts its stream to us at `start`. A new incarnation
  // replaces whatever was known of the old one.
  void on_hello(const NodeId& origin, Incarnation inc, std::uint64_t start);
  // Seqs [first, first+count) arrived. Returns true if the acknowledgement
  // point moved or the batch was a duplicate (so the origin should hear an ack).
  bool on_data(const NodeId& origin, Incarnation inc, std::uint64_t first, std::uint64_t count, Time now);
  // The origin no longer holds what we miss: skip to `next` (caller reconciles).
  void on_reset(const NodeId& origin, Incarnation inc, std::uint64_t next);
  void forget(const NodeId& origin);

  // The ack to send to the origin, once its Hello arrived.
  std::optional<std::uint64_t> ack_point(const NodeId& origin) const;
  // Gaps to NAK now (each gap at most once per nak_interval).
  std::vector<Gap> gaps(Time now);

  std::uint64_t gaps_seen() const { return gaps_seen_; }

 private:
  struct Origin {
    Incarnation inc = 0;
    bool started = false;    // Hello received
    std::uint64_t next = 0;  // everything below arrived (valid once started)
    std::map<std::uint64_t, std::uint64_t> ranges;  // arrived beyond next: [start, end)
    Time nak_sent{};
  };
  Origin* get(const NodeId& origin, Incarnation inc);
  void compact(Origin& o);

  Duration nak_interval_;
  std::map<NodeId, Origin> origins_;
  std::uint64_t gaps_seen_ = 0;
};

}  // namespace rg::grid
