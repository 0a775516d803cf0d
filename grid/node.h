#pragma once
// Node: one grid member's I/O shell. It owns the sockets, the timer and the
// protocol cores (Membership, StreamSender/Receiver, Store), moves bytes and
// time into them and carries out what they ask: heartbeats, probes, batches,
// acks, resends, state transfer and anti-entropy. All on one io_context
// thread; nothing here decides protocol questions the cores decide.
//
// The layers above (the agent, the admin commands) use the public part:
// local reads, write-through writes, member events and change watches.
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
#include "grid/faults.h"
#include "grid/histogram.h"
#include "grid/membership.h"
#include "grid/messages.h"
#include "grid/quorum.h"
#include "grid/node_config.h"
#include "grid/node_context.h"
#include "grid/peer_links.h"
#include "grid/quorum_host.h"
#include "grid/region.h"
#include "grid/stream_receiver.h"
#include "grid/stream_sender.h"

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

  // Write-through: `done` runs once every member in this node's view applied it.
  void put(const std::string& region, const std::string& key, const std::string& value, DoneFn done);
  void put_field(const std::string& region, const std::string& key, const std::string& field,
                 const std::string& value, DoneFn done);
  void del(const std::string& region, const std::string& key, DoneFn done);

  // Quorum registers: compare-and-set accepted by a majority of the
  // members; committed values are pushed to every member's local copy.
  using CasDone = std::function<void(const CasResult&)>;
  void cas(const std::string& key, QuorumProposer::Change change, CasDone done) {
    quorum_.cas(key, std::move(change), std::move(done));
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
  bool member_synced(const NodeId& id) const { return donors_.count(id) > 0; }
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
  Incarnation incarnation() const { return incarnation_; }
  const TransferProgress& transfer() const { return transfer_; }
  std::string status_json() const;
  std::string members_json() const;
  // For metrics: counters as kept, and the write-through latency of puts a
  // caller waits for, from submit to the last member's acknowledgement.
  const NodeCounters& counters() const { return counters_; }
  const ConnCounters& conn_counters() const { return conn_counters_; }
  std::uint64_t retransmits() const { return sender_.retransmits(); }
  const LatencyHistogram& write_latency() const { return write_latency_; }

 private:
  struct PendingWrite {
    std::uint64_t seq;
    DoneFn done;
    Time submitted;
  };

  // node.cpp: sockets, timer, dispatch
  void open_sockets();
  void receive_udp(boost::asio::ip::udp::socket& s, std::string& buf, boost::asio::ip::udp::endpoint& from);
  void accept_tcp();
  void on_datagram(std::string_view bytes);
  void on_frame(Conn* conn, std::uint8_t type, std::string_view body);
  bool heard(const Sender& s, Time now);
  void tick();
  void send_heartbeat(Time now);
  void drain_membership(Time now);
  void on_event(const MembershipEvent& e, Time now);
  void send_udp(const boost::asio::ip::udp::endpoint& to, const std::string& frame);
  void broadcast_udp(const std::string& frame);

  // node_links.cpp: the TCP frame dispatch and probes
  void probe(const ProbeOrder& order);
  // Sending to peers goes through the links (kept here while the write path
  // and state transfer still live in Node's files).
  template <class M>
  std::string frame(MsgType type, const M& msg) const {
    return ctx_.frame(type, msg);
  }
  template <class M>
  void send_peer(const NodeId& peer, MsgType type, const M& msg) {
    links_.send(peer, type, msg);
  }
  void send_peer_frame(const NodeId& peer, const std::string& frame) { links_.send_frame(peer, frame); }

  // node_stream.cpp: replication
  void submit(Write w, DoneFn done);
  void schedule_flush();
  void flush();
  void on_data(const Sender& s, const Data& d, Time now);
  void complete_writes();
  void send_resend(const StreamSender::Resend& r);

  // node_sync.cpp: state transfer and anti-entropy
  void sync_tick(Time now);
  void request_buckets();
  void on_sync_message(MsgType type, const Sender& s, std::string_view body, Time now);
  void send_digests(const NodeId& peer);
  void send_stamps(const NodeId& peer, const std::string& region, const std::vector<std::uint32_t>& buckets);
  static std::uint64_t entry_stamp(const EntryState& e);
  class DiffSender;

  // node_admin.cpp
  void register_admin();

  boost::asio::io_context& io_;
  NodeConfig config_;
  FrameAuth auth_;
  Topology topology_;
  MemberIndex self_index_;
  Incarnation incarnation_;
  Membership membership_;
  MembershipOutput mout_;
  Store store_;
  StreamSender sender_;
  StreamReceiver receiver_;
  NodeCounters counters_;
  ConnCounters conn_counters_;
  LatencyHistogram write_latency_;
  TransferProgress transfer_;
  Time started_;

  boost::asio::ip::udp::socket udp_;
  std::optional<boost::asio::ip::udp::socket> mcast_;
  boost::asio::ip::udp::endpoint group_;
  std::size_t rcvbuf_granted_ = 0;
  boost::asio::ip::tcp::acceptor acceptor_;
  std::unique_ptr<AdminServer> admin_;
  boost::asio::steady_timer timer_;
  std::string udp_buf_, mcast_buf_;
  boost::asio::ip::udp::endpoint udp_from_, mcast_from_;

  std::set<NodeId> donors_;  // alive members whose heartbeat says they hold a full copy
  std::deque<PendingWrite> pending_;
  std::set<NodeId> acks_due_;
  bool flush_posted_ = false;
  Time next_heartbeat_{};
  Time next_anti_entropy_{};
  Time last_write_{};  // last local or replicated write: periodic anti-entropy waits for a quiet stream
  std::size_t anti_entropy_turn_ = 0;
  // State transfer: buckets still to ask for, and how many are in flight.
  std::deque<std::pair<std::string, std::uint32_t>> sync_todo_;
  std::set<std::pair<std::string, std::uint32_t>> sync_inflight_;
  Time sync_deadline_{};
  std::function<void(const std::string&)> fatal_;
  std::vector<MemberFn> member_fns_;
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
  QuorumHost quorum_;
  // True if the fault rules drop (or delay, re-dispatching later) a message from `from`.
  bool fault_in(const NodeId& from, std::function<void()> redo);
};

}  // namespace rg::grid
