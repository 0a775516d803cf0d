#pragma once
// StreamSender: the origin side of this node's replication stream.
//
// Every local write gets the next sequence number. Writes are sent in batches
// (multicast, or TCP in unicast mode), kept until every receiver has
// acknowledged them, resent on a NAK or when a receiver's acknowledgements
// stall (tail loss), and completed (write-through) once every receiver that
// was registered when the write was made has acknowledged it. A receiver is
// registered when membership reports it alive (its stream starts at the next
// seq, announced with a Hello) and dropped when it fails or leaves, which
// completes whatever waited only for it.
//
// Pure: driven by the node's event loop with `now`; no I/O, no clock.
#include <cstdint>
#include <deque>
#include <map>
#include <optional>
#include <vector>

#include "common/clock.h"
#include "common/ids.h"
#include "grid/write.h"

namespace rg::grid {

struct StreamSenderConfig {
  std::size_t window_bytes = 4 * 1024 * 1024;  // unacknowledged bytes in flight
  Duration resend_after = milliseconds(30);     // no ack progress for this long: resend
  std::size_t resend_max = 512;                 // writes resent per peer per tick
};

class StreamSender {
 public:
  explicit StreamSender(StreamSenderConfig config = {});

  // Registers (or re-registers) a receiver; returns the seq its stream starts at.
  std::uint64_t add_peer(const NodeId& peer, Time now);
  // A member heard again. Still registered (it was only suspected, never
  // dropped): its stream goes on, and the writes in flight still wait for
  // its acknowledgement; a new start would count writes it may have lost as
  // acknowledged. Dropped (it had failed): a new stream, as add_peer.
  std::uint64_t restore_peer(const NodeId& peer, Time now);
  void remove_peer(const NodeId& peer);
  std::optional<std::uint64_t> peer_start(const NodeId& peer) const;
  bool has_peer(const NodeId& peer) const { return peers_.count(peer) > 0; }

  // Queues a write; returns its seq.
  std::uint64_t push(Write w);
  // Writes to send now (respecting the window); moves them to in-flight.
  // `first` receives the seq of the first returned write. The pointers stay
  // valid until settle() or on_ack(); call settle() once they are sent.
  std::vector<const Write*> take_sendable(std::uint64_t& first);
  void settle() { advance(); }
  struct Resend {
    NodeId peer;
    std::uint64_t first = 0;
    std::vector<const Write*> writes;
    bool reset = false;  // range no longer held: the peer must reconcile
    std::uint64_t reset_to = 0;
  };
  // An acknowledgement of every seq below `next`. The first one from a peer
  // that is behind what was sent returns the tail to resend at once.
  std::optional<Resend> on_ack(const NodeId& peer, std::uint64_t next, Time now);
  // NAK [from, to) from a peer.
  Resend on_nak(const NodeId& peer, std::uint64_t from, std::uint64_t to, Time now);
  // Peers whose acknowledgements stalled get their unacknowledged tail again.
  std::vector<Resend> tick(Time now);
  // Peers that have not acknowledged anything since registration: their
  // Hello may have been dropped (they had not heard of us yet), so it is due
  // again. Returns (peer, start) pairs.
  std::vector<std::pair<NodeId, std::uint64_t>> hellos_due(Time now);

  // Every seq below this is acknowledged by every registered receiver.
  std::uint64_t completed() const { return completed_; }
  std::uint64_t next_seq() const { return next_; }
  std::uint64_t sent_seq() const { return sent_; }  // writes below this were sent at least once
  std::size_t in_flight_bytes() const { return in_flight_bytes_; }
  std::size_t queued() const { return static_cast<std::size_t>(next_ - sent_); }
  std::uint64_t retransmits() const { return retransmits_; }
  // Per peer: next seq it acknowledged.
  std::map<NodeId, std::uint64_t> acks() const;

 private:
  struct Peer {
    std::uint64_t start = 0;
    std::uint64_t acked = 0;  // next seq not yet acknowledged
    Time progress{};          // last time `acked` moved (or registration)
    Time resent{};
    bool confirmed = false;   // an ack arrived since registration
    Time hello_at{};
  };
  struct Held {
    Write write;
    std::size_t bytes = 0;
  };
  void advance();
  const Write* at(std::uint64_t seq) const { return &held_[seq - base_].write; }
  Resend range(const NodeId& peer, std::uint64_t from, std::uint64_t to);

  StreamSenderConfig config_;
  std::map<NodeId, Peer> peers_;
  std::deque<Held> held_;  // seqs [base_, next_)
  std::uint64_t base_ = 0;
  std::uint64_t sent_ = 0;
  std::uint64_t next_ = 0;
  std::uint64_t completed_ = 0;
  std::size_t in_flight_bytes_ = 0;
  std::uint64_t retransmits_ = 0;
};

}  // namespace rg::grid
