#pragma once
// PeerLinks: a node's TCP links to its peers, and its probes.
//
// One outgoing connection per peer, opened when the peer joins and
// reopened while it stays alive; frames for a peer whose link is not open
// wait in a bounded backlog. A peer that joined a moment ago may not have
// a link of ours yet: replies then go back on the connection it last sent
// us frames on (its reverse route). Probes (direct, and relayed through
// another member) each use a short-lived connection of their own.
//
// Every frame that arrives on any of these connections goes to the node's
// one dispatcher (the FrameFn). Part of the node's I/O shell: one
// io_context thread.
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>

#include <boost/asio/ip/tcp.hpp>

#include "common/clock.h"
#include "common/ids.h"
#include "grid/conn.h"
#include "grid/membership.h"
#include "grid/node_context.h"

namespace rg::grid {

class PeerLinks {
 public:
  using FrameFn = std::function<void(Conn& conn, std::uint8_t type, std::string_view body)>;
  using ProbeDone = std::function<void(bool reached)>;

  PeerLinks(NodeContext& ctx, ConnCounters& conn_counters, FrameFn on_frame);

  // Called after every (re)connection of a link to `peer`, before its backlog
  // goes out (the write path restates where its stream starts).
  void on_connected(std::function<void(const NodeId&)> fn) { on_connected_ = std::move(fn); }

  template <class M>
  void send(const NodeId& peer, MsgType type, const M& msg) {
    if (ctx_.drop_out(peer)) return;
    if (Conn* c = route(peer)) {
      // Built in place in the connection's queue: no copy.
      ctx_.append_frame(c->out_buffer(), type, msg);
      c->flush();
      return;
    }
    send_frame(peer, ctx_.frame(type, msg));
  }
  void send_frame(const NodeId& peer, const std::string& frame);
  // Frames to every open link (a goodbye).
  void send_to_all(const std::string& frame);

  // Membership events.
  void joined(const NodeId& peer, const std::string& address, Incarnation incarnation);
  // True if its link is open (else it reconnects).
  bool restored(const NodeId& peer, const std::string& address);
  void lost(const NodeId& peer);
  // A frame from `peer` arrived on an inbound connection: reply there until
  // our own link is up.
  void heard_on(const NodeId& peer, Conn& conn);
  // Reconnects links of alive peers whose connection dropped.
  void reconnect(Time now, const std::function<bool(const NodeId&)>& alive);

  // Takes an accepted inbound connection.
  void adopt(boost::asio::ip::tcp::socket socket);
  // Probes `target` directly, or through `via` (an indirect probe).
  void probe(const ProbeOrder& order, ProbeDone done);
  void direct_probe(const NodeId& target, const std::string& address, ProbeDone done);
  // The answer to an indirect probe we asked a member for.
  void relay_result(std::uint64_t nonce, bool reached);
  void close_all();

 private:
  struct Link {
    std::shared_ptr<Conn> conn;
    std::string address;
    Incarnation incarnation = 0;
    std::shared_ptr<boost::asio::ip::tcp::socket> pending;  // the connect under way, if any
    std::uint64_t attempt = 0;  // numbers connects: a superseded one's answer is ignored
    Time connect_started{};
    std::string backlog;  // frames queued while not connected
    Time retry_at{};
  };

  Conn* route(const NodeId& peer);  // an open connection to peer, or null
  void connect(const NodeId& peer);
  bool connect_stale(const Link& link) const;
  void close(const NodeId& peer);
  void start_inbound(std::shared_ptr<Conn> c);
  void bound_unacked_time(boost::asio::ip::tcp::socket& sock) const;

  NodeContext& ctx_;
  ConnCounters& conn_counters_;
  FrameFn on_frame_;
  std::function<void(const NodeId&)> on_connected_;
  std::map<NodeId, Link> links_;
  std::set<std::shared_ptr<Conn>> inbound_;
  std::set<std::shared_ptr<Conn>> relays_;  // our connections asking a member to probe
  // The connection each peer last sent us frames on (see the file comment).
  std::map<NodeId, std::weak_ptr<Conn>> reverse_;
  std::map<std::uint64_t, ProbeDone> relay_waits_;
};

}  // namespace rg::grid
