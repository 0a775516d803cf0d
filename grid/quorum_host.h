#pragma once
// QuorumHost: one node's part of the quorum registers. It runs the node's
// proposer (compare-and-set for the layers above), its acceptor host (the
// acceptor, its data dir, its recovery) and its local copy of committed
// values, and carries their messages to and from the peers. Our own
// acceptor answers our proposer through the loop, never re-entrantly.
// Part of the node's I/O shell: one io_context thread.
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "grid/acceptor_host.h"
#include "grid/data_dir.h"
#include "grid/member_change.h"
#include "grid/membership.h"
#include "grid/node_context.h"
#include "grid/peer_links.h"
#include "grid/quorum.h"

namespace rg::grid {

class QuorumHost {
 public:
  using CasDone = std::function<void(const CasResult&)>;

  // Opens the data dir (throws as DataDir does) and loads it.
  QuorumHost(NodeContext& ctx, const Topology& topology, const Membership& membership, PeerLinks& links);

  void cas(const std::string& key, QuorumProposer::Change change, CasDone done, CasMode mode = CasMode::plain);
  const QCommit* value(const std::string& key) const { return copy_.find(key); }
  void on_change(std::function<void(const QCommit&)> fn) { change_fns_.push_back(std::move(fn)); }
  // Every q_* message, whoever sent it (ourselves included).
  void on_message(MsgType type, const Sender& from, std::string_view body, Time now);
  // Every loop turn: timeouts, resends, a retried save, recovery requests.
  void tick(Time now);
  // Every committed value, to a member that just (re)joined.
  void push_commits(const NodeId& peer);

  // Member changes (issue 14). The node adopts a committed configuration
  // newer than its own: the acceptor takes it (saved in the data dir), the
  // proposer runs later operations under it. `topology` is the node's,
  // already updated.
  void adopt(Time now, bool settled);
  // A configuration this host learned committed: a commit of
  // `cluster/members`, or the change it runs committing one. The node
  // adopts it (Node::adopt_config).
  void on_config(std::function<void(const ConfigRecord&)> fn) { config_fn_ = std::move(fn); }
  // A refusal for a newer configuration from `who`: the node asks it for
  // that configuration.
  void on_stale(std::function<void(const NodeId& who)> fn) { stale_fn_ = std::move(fn); }
  // Runs one change (MemberChange) of `id`; `done` gets "" or why it
  // failed. One at a time: a second is refused at once. `keys`: every
  // other register key (caught up after the fence).
  void change_members(const NodeId& id, bool add, std::vector<std::string> keys,
                      std::function<void(const std::string& why)> done);

  const AcceptorHost& acceptors() const { return acceptors_; }
  void heard_other_list(const NodeId& who) { acceptors_.heard_other_list(who); }
  bool save_note(const std::string& name, const std::string& value);
  std::optional<std::string> note(const std::string& name) const { return acceptors_.note(name); }
  const DataDir* data_dir() const { return data_dir_.get(); }
  // Logs what the data dir held and what recovery did; called once the node
  // has started (a start that fails prints one line only).
  void log_start();

 private:
  void send(const QOut& out);
  void on_acceptor_message(MsgType type, const Sender& from, std::string_view body, Time now);
  void log_events();
  void change_result(const CasResult& r, QOut& out);
  void change_progress();

  NodeContext& ctx_;
  const Topology& topology_;
  const Membership& membership_;
  PeerLinks& links_;
  std::unique_ptr<DataDir> data_dir_;  // null in in-memory mode
  std::string state_note_;             // what the data dir held
  AcceptorHost acceptors_;
  QuorumCopy copy_;
  QuorumProposer proposer_;
  QOut out_;
  std::map<std::uint64_t, CasDone> waits_;
  std::vector<std::function<void(const QCommit&)>> change_fns_;
  std::function<void(const ConfigRecord&)> config_fn_;
  std::function<void(const NodeId&)> stale_fn_;
  std::unique_ptr<MemberChange> member_change_;
  std::function<void(const std::string&)> member_change_done_;
};

}  // namespace rg::grid
