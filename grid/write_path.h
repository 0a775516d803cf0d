#pragma once
// WritePath: a node's replicated writes, both ways. Local writes are applied
// to the store, versioned and queued on this node's stream (StreamSender);
// batches go out as one datagram (multicast) or one frame per peer (unicast
// mode); a write-through caller is answered once every member in the view
// has acknowledged it. Other members' batches are applied and acknowledged
// cumulatively (StreamReceiver), gaps are asked for (NAK), tails resent.
// Acknowledgements and writes that arrive together leave together: one
// flush per loop turn. Part of the node's I/O shell: one io_context thread.
#include <cstdint>
#include <deque>
#include <functional>
#include <set>
#include <string>

#include "common/clock.h"
#include "grid/histogram.h"
#include "grid/node_context.h"
#include "grid/peer_links.h"
#include "grid/region.h"
#include "grid/stream_receiver.h"
#include "grid/stream_sender.h"

namespace rg::grid {

class WritePath {
 public:
  using DoneFn = std::function<void(bool ok, const std::string& error)>;
  // Sends one sealed datagram to the multicast group; null in unicast mode.
  using Multicast = std::function<void(std::string& datagram)>;  // unsealed; sealed in place as it leaves

  WritePath(NodeContext& ctx, MemberIndex self_index, Store& store, PeerLinks& links, Multicast multicast);

  // A local write; `done` (may be null) runs once every member applied it.
  // Until the origin is confirmed, it waits (see confirm_origin).
  void submit(Write w, DoneFn done);
  // A member change gave this node another index (a node that joined took
  // the one its configuration assigns, not its place in `--members`).
  void set_self_index(MemberIndex i) { self_index_ = i; }
  // This node may stamp writes now: its index is the configuration's (see
  // Node::confirm_origin_when_ready). The writes held until now go. A
  // version made with a `--members` place (a joiner's, or a node's whose
  // data dir was lost after the members changed) could equal another
  // member's version of the same key, and the two values would never
  // converge.
  void confirm_origin();
  bool origin_known() const { return origin_known_; }
  std::size_t held() const { return held_.size(); }
  // The held writes fail (the node leaves).
  void fail_held(const std::string& why);
  // Sends what is queued now (also before the node leaves).
  void flush();

  // A member joined (its stream restarts), was restored (its stream goes on
  // if it was only suspected), failed or left.
  void add_peer(const NodeId& peer, Time now) { sender_.add_peer(peer, now); }
  void restore_peer(const NodeId& peer, Time now) { sender_.restore_peer(peer, now); }
  void remove_peer(const NodeId& peer);
  // Where our stream to `peer` starts, for a hello after a (re)connection.
  void restate(const NodeId& peer);

  void on_hello(const Sender& from, const Hello& m);
  void on_data(const Sender& from, const Data& m, Time now);
  void on_ack(const NodeId& from, const Ack& m, Time now);
  void on_nak(const NodeId& from, const Nak& m, Time now);
  void on_reset(const Sender& from, const Reset& m);
  // Tail resends, hellos due and NAKs for gaps.
  void tick(Time now);

  Time last_write() const { return last_write_; }
  const StreamSender& sender() const { return sender_; }
  std::size_t pending() const { return pending_.size(); }
  const LatencyHistogram& latency() const { return latency_; }

 private:
  struct HeldWrite {
    Write write;
    DoneFn done;
    Time since;
  };
  struct PendingWrite {
    std::uint64_t seq;
    DoneFn done;
    Time submitted;
  };
  void schedule_flush();
  void expire_held(Time now);
  void complete_writes();
  void send_resend(const StreamSender::Resend& r);
  template <class Send>
  void send_batches(std::uint64_t first, const std::vector<const Write*>& writes, std::size_t budget, Send&& send);

  NodeContext& ctx_;
  MemberIndex self_index_;  // the origin of our writes' versions: our index in the configuration
  Store& store_;
  PeerLinks& links_;
  Multicast multicast_;
  StreamSender sender_;
  StreamReceiver receiver_;
  std::deque<PendingWrite> pending_;
  bool origin_known_ = false;
  std::deque<HeldWrite> held_;  // local writes waiting for confirm_origin(), oldest first
  std::size_t held_bytes_ = 0;
  std::set<NodeId> acks_due_;
  bool flush_posted_ = false;
  Time last_write_{};  // last local or replicated write: periodic anti-entropy waits for a quiet stream
  LatencyHistogram latency_;
};

}  // namespace rg::grid
