#pragma once
// The acceptor side of a node's quorum registers, as one pure core: the
// QuorumAcceptor itself, the durability of its state, and the recovery of a
// restarted acceptor that lost it. Called by the node's shell (one thread)
// with every prepare, accept and recovery message and with ticks; the
// simulations drive it the same way with a simulated store.
//
// Durability. With a StateStore (--data-dir), every change of a promise or
// an accepted value is saved, and the save returns only once it is durable,
// before the answer leaves. A save that fails (full disk, read-only dir,
// failed fsync) undoes the change in memory and the acceptor stops voting,
// with the reason in status(), until a retried save succeeds: it never
// answers from state it could not persist. Layers above keep a few notes
// (the agent's role, epoch and highest epoch seen) in the same state.
//
// Recovery. A node whose state was loaded intact votes at once. One that
// has none (in-memory mode, a first start, a lost or corrupt data dir)
// recovers under three rules, each needed (docs/DESIGN.md, "Restarted
// acceptors"; the Spin model checks them):
//   1. It asks nothing before `wait`, which is longer than any proposer's
//      deadline (with the drift bound). Every vote of its earlier life was
//      given before it started, and a proposer counts a reply only before
//      its deadline, so by then each such vote was counted already (and the
//      other voters of that quorum hold what it accepted) or never will be.
//      It also answers nobody's recovery before `wait`, so its "recovering"
//      says the same of its own earlier life.
//   2. Only answers from ready peers count, and it adopts the highest
//      promise and value of recovery_threshold(n) of them. A recovering
//      peer holds nothing it can vouch for.
//   3. Only answers echoing this life's nonce count: a delayed or replayed
//      answer to an earlier life's request says nothing about now.
// Across configurations (issue 14; DESIGN.md, "Changing the members",
// point 4): a node with no state knows only `--members`, which may be an
// old configuration, and its members may not hold what a newer one chose.
// So ready answers are counted per configuration: each carries the peer's
// `cluster/members` slot, and the node waits for recovery_threshold ready
// members of the highest configuration any answer shows, and of the one
// before it too while that one is not settled (the change may or may not
// have committed, and its catch-up has not run). A configuration record
// exists only once the one before it was settled, so nothing older is
// needed; answers only ever raise the highest version (a fixpoint), and
// a committed newer version cannot hide: a majority of the one before
// accepted it, and the answers counted there meet that majority. Only the
// answers of members of those configurations are adopted: anyone else may
// be a member removed long ago that never heard of it, holding a value it
// accepted as one of a minority at a ballot above what was chosen since.
// Live nodes the shell hears of (heard()) are asked too, so members added
// after `--members` are found (the simulations do; the node's links reach
// only members of its own configuration, so it does not call it yet, and a
// node that lost its data dir learns newer members from the configuration
// its peers tell it). Recovered, the node takes the highest
// configuration known committed (the settled one) as its own. A member
// that a configuration removed forgot its slots: it answers nobody's
// recovery (also after a restart) until it is added again, so it never
// counts.
// Bootstrap: when every other member's latest answer says it is recovering
// too, or ready but holding no accepted value, no member holds a value to
// recover, and this one starts empty (with the promises it heard): a new
// cluster, or a cluster that lost every member's state. A member that holds
// a value keeps the others waiting for recovery_threshold(n) ready answers
// rather than forgetting what it holds; starting empty beside it would be a
// fresh acceptor beside a value chosen by the earlier life (DESIGN.md).
// Bootstrap is also held off, for the rest of this life, once a node of
// this cluster on another member list has been heard: the members of a new
// list starting empty beside a cluster still running on the old list would
// be a second cluster, with a master of its own (README, "Changing the
// members"). For this life, not while it is heard: a partition or a loss
// burst between the two would otherwise end the hold. A node held by
// mistake starts once restarted after the other list's nodes are gone.
#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "common/clock.h"
#include "common/ids.h"
#include "grid/config_record.h"
#include "grid/quorum.h"

namespace rg::grid {

// What a node keeps durable: its acceptor's slots and a few notes of the
// layers above, by name.
struct DurableState {
  std::vector<QSlotState> slots;
  std::map<std::string, std::string> notes;
  bool operator==(const DurableState&) const = default;
  template <class Ar>
  void io(Ar& ar) {
    rg::io(ar, slots);
    rg::io(ar, notes);
  }
};

// Where DurableState goes. The node's shell gives a data-dir file; the
// simulations give memory that survives a simulated crash.
class StateStore {
 public:
  virtual ~StateStore() = default;
  // Durable (fsync'd) when it returns true; otherwise `why` says what failed.
  virtual bool save(const DurableState& state, std::string& why) = 0;
};

// The note holding the acceptor's highest configuration tag seen
// ("version:digest"); parse_config_tag gives version 0 for anything else.
inline constexpr const char* kConfigSeenNote = "grid.config_seen";
// Present while the node is removed (it forgot its slots; see forget()).
inline constexpr const char* kRemovedNote = "grid.removed";
// The configuration this acceptor works in, once past version 1 (an encoded
// ConfigRecord): a restart uses it, whatever `--members` says.
inline constexpr const char* kConfigNote = "grid.config";
ConfigTag parse_config_tag(const std::string& text);

struct AcceptorHostConfig {
  Topology topology;
  NodeId self;
  // Longer than any proposer's deadline, drift included (rule 1).
  Duration recovery_wait = milliseconds(1000);
  // How often to ask peers that have not answered, and to retry a failed save.
  Duration retry_interval = milliseconds(100);
  // Tests only: planted bugs the simulations must catch (never set in the
  // product). count_recovering_peers breaks rule 2, skip_recovery_wait rule 1,
  // recover_one_config counts answers in `topology` alone (the rule before
  // member changes),
  // reads_restart_lease brings back the earlier lease rule (any accept
  // restarts the lease clock), no_late_answers drops answers_due,
  // vote_unsaved answers from a change the store refused to save.
  struct Plants {
    bool count_recovering_peers = false;
    bool skip_recovery_wait = false;
    bool reads_restart_lease = false;
    bool no_late_answers = false;
    bool vote_unsaved = false;
    bool no_config_fence = false;  // QuorumAcceptor::plant_no_config_fence
    bool recover_one_config = false;
  } plant;
  // Started to join a running cluster (--join): never bootstraps.
  bool joining = false;
};

class AcceptorHost {
 public:
  // `store` null: in-memory mode (nothing survives the process). `loaded`:
  // the state found intact in the store, if any; without it the acceptor
  // recovers. `nonce` must differ between lives (the shell draws it at random).
  AcceptorHost(AcceptorHostConfig config, StateStore* store, std::optional<DurableState> loaded, Time now,
               std::uint64_t nonce);

  // nullopt: no answer (recovering, or the change could not be made durable).
  std::optional<QPromise> on_prepare(const QPrepare& m, Time now);
  std::optional<QAccepted> on_accept(const QAccept& m, Time now);
  // nullopt while this life is younger than recovery_wait (rule 1). Until
  // ready, the asker is also owed our state (answers_due).
  std::optional<QRecoverState> on_recover_request(const NodeId& from, const QRecoverRequest& m, Time now);
  void on_recover_state(const NodeId& from, const QRecoverState& m, Time now);
  // `who`, of this cluster, runs on another member list (the shell refused
  // its heartbeat): no bootstrap in this life.
  void heard_other_list(const NodeId& who);
  // `who` is a live node of this cluster (the shell heard it): while
  // recovering, it is asked too, so that members of a configuration newer
  // than `--members` are found. Its answer counts only if it is a member of
  // a configuration recovery waits for.
  void heard(const NodeId& who);
  // Members to send a recovery request to now (nothing once ready).
  std::vector<NodeId> requests_due(Time now);
  // Once ready: our state for each peer that asked while we could not give
  // it, echoing that peer's nonce, each once. Without it a peer's recovery
  // waits for its next retry, and a fault landing first (its last holder
  // cut off) keeps it from voting for as long as the fault lasts. An answer
  // sent late is only a delayed answer: the peer's nonce check (rule 3)
  // drops it if that peer has restarted since.
  std::vector<std::pair<NodeId, QRecoverState>> answers_due();
  QRecoverRequest request() const { return QRecoverRequest{nonce_}; }
  // Retries a failed save.
  void tick(Time now);
  // The node adopted the committed configuration `t` (`settled`: its
  // record says fenced and caught up). The acceptor takes its tag: older
  // proposers are refused from now on, whether or not a fence reached us.
  // Once a settled `t` leaves this node out, the acceptor also forgets
  // every slot and answers no recovery (removed()): added again later, it
  // must start empty like any new member, or a value it accepted long ago
  // as one of a minority could come back over a later one. Not before it is
  // settled: until the catch-up ran, its slots may be the last copy of a
  // value the configuration before chose. False if the save failed
  // (retried by tick).
  bool adopted(const Topology& t, bool settled = false);
  bool removed() const { return removed_; }

  // Notes of the layers above, saved with the acceptor's state. False (with
  // the reason in status()) if the save failed; the note is kept in memory
  // and saved with the next change that succeeds.
  bool set_note(const std::string& name, const std::string& value);
  std::optional<std::string> note(const std::string& name) const;

  // The configuration this acceptor works in: the one it was given, one it
  // adopted, or, recovered without state, the highest one its peers'
  // answers show committed. The shell adopts it when it is newer than its own.
  const Topology& topology() const { return config_.topology; }

  // Votes: recovered (or loaded intact) and its state is durable.
  bool voting() const { return ready_ && disk_error_.empty(); }
  bool ready() const { return ready_; }
  bool durable() const { return store_ != nullptr; }
  const std::string& disk_error() const { return disk_error_; }
  // One line on where recovery stands, for status and logs.
  std::string progress(Time now) const;
  // One-line notable events (+quorum-ready, +bootstrap-held, +disk-fault,
  // +disk-ok) since the last call, for the shell's log.
  std::vector<std::string> take_events();
  const QuorumAcceptor& acceptor() const { return acceptor_; }

 private:
  bool persist();
  DurableState snapshot() const;
  void become_ready(const std::string& how);
  template <class Answer, class F>
  std::optional<Answer> vote(F&& step);
  bool waiting(Time now) const;  // rule 1: this life is younger than recovery_wait
  bool known(const NodeId& id) const;  // a member of a configuration we know of
  void note_record(const QSlotState& slot);
  std::vector<Topology> needed() const;  // the configurations whose answers recovery waits for
  std::uint64_t top_record() const;      // the highest record version in the answers (0: none)
  bool seen_beyond_records() const;
  std::size_t answered(const Topology& t) const;
  bool recovered() const;
  Topology recovered_config() const;
  bool bootstrap_possible();
  void take_answers(Time now);
  void forget();

  AcceptorHostConfig config_;
  StateStore* store_;
  QuorumAcceptor acceptor_;
  std::map<std::string, std::string> notes_;
  std::uint64_t nonce_;
  Time born_;
  bool ready_ = false;
  std::string disk_error_;  // the last failed save, until one succeeds
  Time next_retry_{};
  Time next_ask_{};
  enum class Answer { recovering, blank, holding };  // blank: ready, no accepted value
  std::map<NodeId, Answer> latest_;  // each peer's latest answer
  std::set<NodeId> counted_;         // rule 2: peers whose ready answer we adopted
  std::map<NodeId, QRecoverState> answers_;  // their latest ready answers, adopted once recovered
  std::vector<ConfigRecord> records_;  // the `cluster/members` values in those answers, distinct
  std::set<NodeId> heard_;             // live nodes the shell heard of, asked too
  bool removed_ = false;               // forgot its slots when removed; answers no recovery
  std::map<NodeId, std::uint64_t> owed_;  // askers (their latest nonce) owed our state
  std::optional<NodeId> other_list_;  // the latest node heard on another list: holds bootstrap off
  bool held_logged_ = false;  // +bootstrap-held said once
  std::vector<std::string> events_;
};

}  // namespace rg::grid
