#pragma once
// Node: one grid member's I/O shell, a thin owner that wires its parts:
//   PeerLinks    TCP links to peers, probes               (peer_links.*)
//   WritePath    the replication stream, write-through    (write_path.*)
//   StateSync    state transfer and anti-entropy          (state_sync.*)
//   QuorumHost   the quorum registers, the data dir       (quorum_host.*)
// Node itself owns the UDP sockets, the timer and Membership (heartbeats,
// member events), and the one dispatcher every incoming message goes
// through, whatever its transport (node_dispatch.cpp). The admin commands
// are in node_admin.cpp. All on one io_context thread; nothing here decides
// protocol questions the pure cores (Membership, StreamSender/Receiver,
// Store, the quorum register) decide.
//
// The layers above (the agent, the admin commands) use the public part:
// local reads, write-through writes, compare-and-set on quorum registers,
// member events, change watches, app messages.
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ip/udp.hpp>
#include <boost/asio/steady_timer.hpp>

#include "common/frame.h"
#include "grid/admin_server.h"
#include "grid/conn.h"
#include "grid/datagrams.h"
#include "grid/faults.h"
#include "grid/histogram.h"
#include "grid/membership.h"
#include "grid/messages.h"
#include "grid/quorum.h"
#include "grid/node_config.h"
#include "grid/node_context.h"
#include "grid/peer_links.h"
#include "grid/sessions.h"
#include "grid/quorum_host.h"
#include "grid/state_sync.h"
#include "grid/write_path.h"
#include "grid/region.h"
#include "grid/stream_receiver.h"
#include "grid/stream_sender.h"

namespace rg::grid {

class Node {
 public:
  using MemberFn = std::function<void(const MembershipEvent&)>;
  using DoneFn = std::function<void(bool ok, const std::string& error)>;

  // Binds every socket; throws std::runtime_error with a one-line reason.
  Node(boost::asio::io_context& io, NodeConfig config);
  ~Node();

  void start();
  // Tells every member we leave, then calls done (the caller stops the loop).
  void leave(std::function<void()> done);
  // Called with a one-line reason when the cluster refuses this node.
  void on_fatal(std::function<void(const std::string&)> fn) { fatal_ = std::move(fn); }
  void on_member_event(MemberFn fn) { member_fns_.push_back(std::move(fn)); }
  // The check behind the admin writes' `if-epoch N`: "" lets the write
  // through, else why not. Set by the agent (the grid knows no epochs).
  using EpochGuard = std::function<std::string(std::uint64_t epoch)>;
  void set_epoch_guard(EpochGuard g) { epoch_guard_ = std::move(g); }

  // Write-through: `done` runs once every member in this node's view applied it.
  void put(const std::string& region, const std::string& key, const std::string& value, DoneFn done) {
    writes_.submit(Write{region, key, WriteKind::put, {}, value, 0}, std::move(done));
  }
  void put_field(const std::string& region, const std::string& key, const std::string& field,
                 const std::string& value, DoneFn done) {
    writes_.submit(Write{region, key, WriteKind::put_field, field, value, 0}, std::move(done));
  }
  void del(const std::string& region, const std::string& key, DoneFn done) {
    writes_.submit(Write{region, key, WriteKind::del, {}, {}, 0}, std::move(done));
  }

  // Quorum registers: compare-and-set accepted by a majority of the
  // members; committed values are pushed to every member's local copy.
  using CasDone = std::function<void(const CasResult&)>;
  void cas(const std::string& key, QuorumProposer::Change change, CasDone done, CasMode mode = CasMode::plain) {
    quorum_.cas(key, std::move(change), std::move(done), mode);
  }
  const QCommit* quorum_value(const std::string& key) const { return quorum_.value(key); }
  void on_quorum_change(std::function<void(const QCommit&)> fn) { quorum_.on_change(std::move(fn)); }
  // Messages of the layers above, by channel: to one member or every alive one.
  using AppFn = std::function<void(const NodeId& from, const std::string& payload)>;
  void send_app(const NodeId& peer, const std::string& channel, const std::string& payload);
  void broadcast_app(const std::string& channel, const std::string& payload);
  void on_app(const std::string& channel, AppFn fn) { app_fns_[channel] = std::move(fn); }
  // A status section of the layers above, added to `status`.
  void add_status(std::string name, std::function<std::string()> json_fn) {
    status_fns_.emplace_back(std::move(name), std::move(json_fn));
  }
  bool member_synced(const NodeId& id) const { return sync_.holds_full_copy(id); }

  // Member changes (issue 14; node_members.cpp). The configuration in use:
  // `--members` (version 1) or the one the data dir or a change gave.
  const Topology& topology() const { return topology_; }
  // Called when the node adopts a newer configuration.
  void on_config(std::function<void(const Topology&)> fn) { config_fns_.push_back(std::move(fn)); }
  // Called once, with a one-line reason, when a settled change removed
  // this node: the caller stops it gracefully (fatal_ if unset).
  void on_removed(std::function<void(const std::string&)> fn) { removed_fn_ = std::move(fn); }
  // A register key of the layers above: a member change catches it up.
  void add_quorum_key(const std::string& key) { quorum_keys_.insert(key); }
  // Adds or removes one member through the register (MemberChange); `done`
  // gets "" once the change is settled, else why it failed.
  void change_members(const NodeId& id, bool add, std::function<void(const std::string& why)> done);
  // This node's acceptor loaded its state intact or recovered what its
  // earlier life may have voted (AcceptorHost) and takes part in quorums.
  bool quorum_ready() const { return quorum_.acceptors().ready(); }
  const AcceptorHost& acceptors() const { return quorum_.acceptors(); }
  // Notes of the layers above, kept durable with the acceptor's state (in
  // memory only without a data dir). save_note is false if the save failed.
  bool save_note(const std::string& name, const std::string& value) { return quorum_.save_note(name, value); }
  std::optional<std::string> note(const std::string& name) const { return quorum_.note(name); }

  Store& store() { return store_; }
  const Membership& membership() const { return membership_; }
  AdminServer& admin() { return *admin_; }
  const NodeConfig& config() const { return config_; }
  // The injected faults (--enable-fault-injection), else null.
  const FaultRules* faults() const { return faults_ ? &*faults_ : nullptr; }
  Incarnation incarnation() const { return incarnation_; }
  const TransferProgress& transfer() const { return sync_.transfer(); }
  std::string status_json() const;
  std::string members_json() const;
  // For metrics: counters as kept, and the write-through latency of puts a
  // caller waits for, from submit to the last member's acknowledgement.
  const NodeCounters& counters() const { return counters_; }
  const ConnCounters& conn_counters() const { return conn_counters_; }
  std::uint64_t retransmits() const { return writes_.sender().retransmits(); }
  const LatencyHistogram& write_latency() const { return writes_.latency(); }

 private:
  // node.cpp: sockets, timer, membership events, heartbeats, leaving
  void open_sockets();
  void accept_tcp();
  bool heard(const Sender& s, Time now);
  void tick();
  Heartbeat heartbeat() const;
  void send_heartbeat(Time now);
  void drain_membership(Time now);
  void on_event(const MembershipEvent& e, Time now);
  // Datagrams leave sealed under our session; `frame` is unsealed. The
  // in-place form seals (and so consumes) the caller's buffer.
  void send_udp(const boost::asio::ip::udp::endpoint& to, const std::string& frame);
  void send_udp(const std::string& address, const std::string& frame);  // HOST:PORT
  void seal_and_send(const boost::asio::ip::udp::endpoint& to, std::string& frame);
  void broadcast_udp(const std::string& frame);
  // True if the fault rules drop (or delay, re-dispatching later) a message from `from`.
  bool fault_in(const NodeId& from, std::function<void()> redo);

  // node_dispatch.cpp: every incoming message, whatever its transport
  void on_datagram(char* bytes, std::size_t size);
  void challenge(const SessionId& s, MsgType type, std::string_view body, const Sender& from, Time now);
  void on_challenge(const FrameHeader& h, MsgType type, std::string_view body, Time now);
  void on_frame(Conn* conn, std::uint8_t type, std::string_view body);
  void dispatch(Conn* conn, MsgType type, std::string_view body);
  void route(Conn* conn, MsgType type, const Sender& from, std::string_view body);
  void malformed(Conn* conn);
  bool delayed_by_faults(Conn* conn, MsgType type, const Sender& from, std::string_view body);
  void on_heartbeat(std::string_view body, Time now);
  void on_refuse(std::string_view body);
  void on_probe_message(Conn& conn, MsgType type, std::string_view body);
  void on_stream_message(Conn* conn, MsgType type, const Sender& from, std::string_view body, Time now);
  void on_member_message(Conn* conn, MsgType type, const Sender& from, std::string_view body, Time now);
  void on_app_message(const Sender& from, const AppMessage& m);
  void probe(const ProbeOrder& order);
  template <class M>
  std::string frame(MsgType type, const M& msg) const {
    return ctx_.frame(type, msg);
  }

  // node_admin.cpp
  void register_admin();

  // node_members.cpp: adopting configurations and telling peers of them
  void adopt_config(const ConfigRecord& r);
  void compare_config(std::uint64_t their_version, const NodeId& who, const std::string& address, Time now);
  void confirm_origin_when_ready(Time now);
  bool first_list_confirmed(Time now) const;
  void ask_config(const std::string& address, Time now);
  bool due(const std::string& address, Time now);
  void on_config_message(MsgType type, std::string_view body);
  ConfigRecord config_record() const;
  std::string change_blocked(const NodeId& id, bool add) const;

  boost::asio::io_context& io_;
  NodeConfig config_;
  DatagramCrypto crypto_;        // peer key: datagrams and link handshakes
  DatagramCrypto admin_crypto_;  // admin key: admin connection handshakes
  PeerSessions sessions_;        // which datagram senders are proven live
  ChallengeLog challenge_log_;   // challenges answered (a replayed one gets no second answer)
  std::string udp_out_;          // scratch: a datagram being sealed
  Time answer_window_{};         // challenge answers are rate-limited per 100 ms
  std::size_t answers_in_window_ = 0;
  Topology topology_;
  MemberIndex self_index_;
  Incarnation incarnation_;
  Membership membership_;
  MembershipOutput mout_;
  Store store_;
  NodeCounters counters_;
  ConnCounters conn_counters_;
  // Processes whose heartbeat we refused for running on another member
  // list, and whether we logged ignoring a refusal of theirs (on_refuse).
  struct OtherList {
    Incarnation incarnation = 0;
    bool refusal_logged = false;
  };
  std::map<NodeId, OtherList> other_list_;
  Time started_;

  boost::asio::ip::udp::socket udp_;
  std::optional<boost::asio::ip::udp::socket> mcast_;
  boost::asio::ip::udp::endpoint group_;
  std::size_t rcvbuf_granted_ = 0;
  boost::asio::ip::tcp::acceptor acceptor_;
  std::unique_ptr<AdminServer> admin_;
  boost::asio::steady_timer timer_;
  std::optional<DatagramReader> udp_reader_, mcast_reader_;

  Time next_heartbeat_{};
  std::function<void(const std::string&)> fatal_;
  EpochGuard epoch_guard_;
  std::vector<MemberFn> member_fns_;
  std::vector<std::function<void(const Topology&)>> config_fns_;
  std::set<std::string> quorum_keys_;
  std::map<std::string, Time> config_sent_;  // by address: one ask or tell per heartbeat interval
  std::map<NodeId, std::uint64_t> peer_versions_;  // the configuration version each peer last announced
  bool removed_ = false;   // a configuration we adopted, having voted in the one before, leaves us out
  bool stopping_ = false;  // ... and it is settled: on_removed was called
  std::function<void(const std::string&)> removed_fn_;
  struct Watch {
    std::string region;
    std::string prefix;
    Reply reply;
  };
  std::vector<Watch> watches_;
  std::map<std::string, AppFn> app_fns_;
  std::vector<std::pair<std::string, std::function<std::string()>>> status_fns_;
  std::optional<FaultRules> faults_;
  bool fault_bypass_ = false;  // re-dispatching a message the rules delayed
  // The parts of the node (after everything they refer to).
  NodeContext ctx_;
  PeerLinks links_;
  WritePath writes_;
  StateSync sync_;
  QuorumHost quorum_;
};

}  // namespace rg::grid
