#pragma once
// StateSync: a node's state transfer (copying every region from a member
// that holds a full copy, one bucket at a time, four in flight) and its
// anti-entropy (bucket digests, then per-key stamps, then only the entries
// that differ), in both roles: asking and answering. Writes go on during a
// transfer: bucket entries merge by version. Part of the node's I/O shell:
// one io_context thread.
#include <cstdint>
#include <deque>
#include <map>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "common/clock.h"
#include "grid/membership.h"
#include "grid/node_context.h"
#include "grid/peer_links.h"
#include "grid/region.h"

namespace rg::grid {

struct TransferProgress {
  bool synced = false;
  bool copying = false;
  NodeId donor;
  std::uint64_t buckets_done = 0;
  std::uint64_t buckets_total = 0;
  std::uint64_t entries = 0;
  Time started{};
  Time finished{};
};

class StateSync {
 public:
  StateSync(NodeContext& ctx, Store& store, const Membership& membership, PeerLinks& links);

  void start(Time now);
  // Transfer (until synced), and a periodic anti-entropy round with one
  // member while writes are quiet (`last_write`: the latest one seen).
  void tick(Time now, Time last_write);
  // Heartbeats say whether `peer` holds a full copy. A new one while we
  // hold one too reconciles at once (a simultaneous start, a partition).
  void heard(const NodeId& peer, bool holds_full_copy);
  // A member failed or left: not a donor; a transfer from it moves on.
  void lost(const NodeId& peer);
  void on_message(MsgType type, const Sender& from, std::string_view body);
  void send_digests(const NodeId& peer);
  // A member back from failed (dropped from the view, so writes completed
  // without it): reconcile now, and again twice later, whether writes are
  // quiet or not. One round is a few fire-and-forget frames; a link that
  // died during the fault can lose them (its reset arrives after the heal),
  // and under load the periodic round never runs.
  void restored(const NodeId& peer, Time now);

  const TransferProgress& transfer() const { return transfer_; }
  bool holds_full_copy(const NodeId& peer) const { return donors_.contains(peer); }

 private:
  class DiffSender;
  void request_buckets();
  void send_stamps(const NodeId& peer, const std::string& region, const std::vector<std::uint32_t>& buckets);
  void answer_buckets(const NodeId& peer, const BucketRequest& m);
  void on_digests(const NodeId& peer, const Digests& m);
  void on_stamps(const NodeId& peer, const KeyStamps& m);

  NodeContext& ctx_;
  Store& store_;
  const Membership& membership_;
  PeerLinks& links_;
  TransferProgress transfer_;
  std::set<NodeId> donors_;  // alive members whose heartbeat says they hold a full copy
  // Buckets still to ask for, and those in flight.
  std::deque<std::pair<std::string, std::uint32_t>> todo_;
  std::set<std::pair<std::string, std::uint32_t>> inflight_;
  Time deadline_{};  // nobody with data answered by then: an empty grid is the full copy
  Time next_anti_entropy_{};
  std::size_t anti_entropy_turn_ = 0;
  struct FollowUp {
    Time at{};
    int left = 0;
  };
  std::map<NodeId, FollowUp> follow_ups_;  // rounds still owed to restored members
};

}  // namespace rg::grid
