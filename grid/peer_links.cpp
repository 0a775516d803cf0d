// PeerLinks: TCP links to peers, their backlogs and reverse routes, probes.
#include "grid/peer_links.h"

#include <boost/asio/connect.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>
#include <algorithm>
#include <netinet/in.h>
#include <netinet/tcp.h>

namespace rg::grid {

namespace asio = boost::asio;
using asio::ip::tcp;

namespace {
constexpr std::size_t kMaxBacklog = 64 * 1024 * 1024;
// Inbound connections at once: a link per peer, probes, relays; far fewer in practice.
constexpr std::size_t kMaxInbound = 512;
}  // namespace

PeerLinks::PeerLinks(NodeContext& ctx, ConnCounters& conn_counters, FrameFn on_frame)
    : ctx_(ctx), conn_counters_(conn_counters), on_frame_(std::move(on_frame)) {}

// A peer connection whose sent data stays unacknowledged for two failure
// timeouts (at least 2 s) is dead: the kernel aborts it (TCP_USER_TIMEOUT)
// instead of backing off for minutes. Without this, a link cut one way (or
// both, while the other side closed it) stays "open" across the heal, and
// frames written to it vanish when the peer's reset finally arrives: a chaos
// run lost a reconciliation reply that way (master-reaches-replica.chaos).
// The floor keeps it well above TCP's own retransmission timeouts (200 ms
// and doubling): at a 50 ms failure timeout, 100 ms aborted busy links and
// cost the master its lease.
void PeerLinks::bound_unacked_time(tcp::socket& sock) const {
  using UserTimeout = asio::detail::socket_option::integer<IPPROTO_TCP, TCP_USER_TIMEOUT>;
  boost::system::error_code ec;
  auto ms = std::max<std::int64_t>(to_ms(2 * ctx_.config.failure_timeout), 2000);
  sock.set_option(UserTimeout(static_cast<int>(ms)), ec);
}

Conn* PeerLinks::route(const NodeId& peer) {
  auto it = links_.find(peer);
  if (it != links_.end() && it->second.conn && it->second.conn->open()) return it->second.conn.get();
  auto r = reverse_.find(peer);
  if (r != reverse_.end()) {
    if (auto c = r->second.lock(); c && c->open()) return c.get();
    reverse_.erase(r);
  }
  return nullptr;
}

void PeerLinks::send_frame(const NodeId& peer, const std::string& f) {
  if (ctx_.drop_out(peer)) return;
  if (Conn* c = route(peer)) {
    c->send_frame(f);
    return;
  }
  auto it = links_.find(peer);
  if (it == links_.end()) return;
  auto& link = it->second;
  if (link.backlog.size() + f.size() > kMaxBacklog) {
    ++ctx_.counters.link_queue_drops;
    return;
  }
  link.backlog.append(f);
  if (!link.pending) connect(peer);
}

void PeerLinks::send_to_all(const std::string& frame) {
  for (const auto& [id, link] : links_)
    if (link.conn && link.conn->open()) link.conn->send_frame(frame);
}

void PeerLinks::joined(const NodeId& peer, const std::string& address, Incarnation incarnation) {
  auto& link = links_[peer];
  if (link.conn && (link.address != address || link.incarnation != incarnation)) close(peer);
  link.address = address;
  link.incarnation = incarnation;
  connect(peer);
}

// A link across a partition that healed before the peer was declared
// failed stays open, but the kernel resends its unacknowledged data on a
// timer that doubled through the cut (200 ms, 400, 800...): after a 1.5 s
// partition, nothing reaches the peer on it for up to 1.5 s more. A fresh
// connection takes one round trip; the write stream restates itself on it.
bool PeerLinks::restored(const NodeId& peer, const std::string& address) {
  auto& link = links_[peer];
  link.address = address;
  if (link.conn && link.conn->open() && link.conn->retransmitting()) {
    ++conn_counters_.stalled_links_replaced;
    close(peer);
    // Its link to us is likely stalled too, and it replaces it at the same
    // moment: frames routed there would meet its reset. They wait in the
    // backlog for our new link instead (review).
    reverse_.erase(peer);
  }
  if (link.conn && link.conn->open()) return true;
  connect(peer);
  return false;
}

void PeerLinks::lost(const NodeId& peer) {
  close(peer);
  // Its connection to us may be half dead (a partition sends no FIN):
  // replies must not go there once it is heard again.
  if (auto r = reverse_.find(peer); r != reverse_.end()) {
    if (auto c = r->second.lock()) c->close();
    reverse_.erase(r);
  }
}

void PeerLinks::heard_on(const NodeId& peer, Conn& conn) {
  if (conn.tag.empty()) reverse_[peer] = conn.weak_from_this();
}

void PeerLinks::reconnect(Time now, const std::function<bool(const NodeId&)>& alive) {
  for (auto& [id, link] : links_)
    if ((!link.conn || !link.conn->open()) && alive(id) && now >= link.retry_at) connect(id);
}

// A connect still unanswered after a probe timeout lost its SYN (sent into
// a partition, or to a peer paused or gone); the kernel would send it again
// only 1 s later, then 3 s, with every frame for that peer queued meanwhile
// (after a heal, up to seconds). Such a connect is dropped and started
// again; chaos runs with partitions restart a few (`connects_restarted`).
bool PeerLinks::connect_stale(const Link& link) const {
  return link.pending && Clock::now() - link.connect_started >= ctx_.config.probe_timeout;
}

void PeerLinks::connect(const NodeId& peer) {
  auto& link = links_[peer];
  if (link.conn && link.conn->open()) return;
  if (link.pending && !connect_stale(link)) return;
  auto ep = parse_endpoint(link.address);
  if (!ep) return;
  if (link.pending) {
    boost::system::error_code ignored;
    link.pending->close(ignored);  // its handler sees a newer attempt and does nothing
    ++conn_counters_.connects_restarted;
  }
  link.connect_started = Clock::now();
  auto attempt = ++link.attempt;
  auto sock = std::make_shared<tcp::socket>(ctx_.io);
  link.pending = sock;
  tcp::endpoint to(asio::ip::make_address(ep->host), ep->port);
  auto inc = link.incarnation;
  sock->async_connect(to, [this, sock, peer, inc, attempt](auto ec) {
    auto it = links_.find(peer);
    if (it == links_.end() || ctx_.leaving) return;
    auto& l = it->second;
    if (l.attempt != attempt) return;  // superseded by a newer connect
    l.pending.reset();
    if (ec || l.incarnation != inc) {
      l.retry_at = Clock::now() + milliseconds(100);
      return;
    }
    bound_unacked_time(*sock);
    l.conn = std::make_shared<Conn>(std::move(*sock), ctx_.crypto, true, conn_counters_, kMaxStreamBody);
    l.conn->tag = peer;
    l.conn->start(on_frame_, [this, peer](Conn& c) {
      auto it2 = links_.find(peer);
      if (it2 != links_.end() && it2->second.conn.get() == &c) {
        it2->second.conn.reset();
        it2->second.retry_at = Clock::now() + milliseconds(50);
      }
    });
    if (on_connected_) on_connected_(peer);
    if (!l.backlog.empty()) {
      std::string backlog;
      backlog.swap(l.backlog);
      l.conn->send_frame(backlog);
    }
  });
}

void PeerLinks::close(const NodeId& peer) {
  auto it = links_.find(peer);
  if (it == links_.end()) return;
  it->second.backlog.clear();
  if (auto c = it->second.conn) {
    it->second.conn.reset();
    c->close();
  }
}

void PeerLinks::adopt(tcp::socket socket) {
  if (!make_room_for_inbound(inbound_, kMaxInbound, conn_counters_)) {
    ++conn_counters_.refused_connections;
    return;  // the socket closes as it goes out of scope
  }
  bound_unacked_time(socket);
  start_inbound(std::make_shared<Conn>(std::move(socket), ctx_.crypto, false, conn_counters_, kMaxStreamBody));
}

void PeerLinks::start_inbound(std::shared_ptr<Conn> c) {
  inbound_.insert(c);
  c->start(on_frame_, [this](Conn& conn) { inbound_.erase(conn.shared_from_this()); });
}

void PeerLinks::probe(const ProbeOrder& order, ProbeDone done) {
  ++ctx_.counters.probes;
  if (order.via.empty()) return direct_probe(order.target, order.address, std::move(done));
  if (ctx_.drop_out(order.via)) return;  // lost: membership's deadline decides
  // Indirect: ask `via` to probe the target and tell us. No answer in time
  // counts as a failed probe (membership's own deadline covers that).
  auto ep = parse_endpoint(order.via_address);
  if (!ep) return;
  auto nonce = order.nonce;
  relay_waits_[nonce] = std::move(done);
  auto sock = std::make_shared<tcp::socket>(ctx_.io);
  auto relay = std::make_shared<std::weak_ptr<Conn>>();
  // Past membership's deadline (one probe timeout) the result no longer
  // counts: end the relay then, connect included, and drop its wait. Else a
  // result that never comes (lost, or a relay host gone without a reset)
  // would keep the connection, and at the relay an inbound slot, for good.
  auto expiry = std::make_shared<asio::steady_timer>(ctx_.io, 2 * ctx_.config.probe_timeout);
  expiry->async_wait([this, sock, relay, nonce, expiry](auto) {
    boost::system::error_code ignored;
    sock->close(ignored);
    if (auto c = relay->lock()) c->close();
    relay_waits_.erase(nonce);
  });
  auto msg = ctx_.frame(MsgType::probe_relay, ProbeRelay{nonce, order.target, order.address});
  sock->async_connect(tcp::endpoint(asio::ip::make_address(ep->host), ep->port), [this, sock, relay, msg, nonce](auto ec) {
    if (ec || ctx_.leaving) return relay_result(nonce, false);
    // Ours, not an inbound one: kept apart so a flood of inbound
    // connections can never close it (make_room_for_inbound).
    auto c = std::make_shared<Conn>(std::move(*sock), ctx_.crypto, true, conn_counters_, 4096);
    *relay = c;
    relays_.insert(c);
    c->start(on_frame_, [this](Conn& conn) { relays_.erase(conn.shared_from_this()); });
    c->send_frame(msg);
  });
}

void PeerLinks::relay_result(std::uint64_t nonce, bool reached) {
  auto it = relay_waits_.find(nonce);
  if (it == relay_waits_.end()) return;
  auto fn = std::move(it->second);
  relay_waits_.erase(it);
  fn(reached);
}

// A probe is answered on its own fresh connection (so after its own
// handshake): an answer recorded earlier cannot pass for a live target.
void PeerLinks::direct_probe(const NodeId& target, const std::string& address, ProbeDone done) {
  auto ep = parse_endpoint(address);
  if (!ep) return done(false);
  if (ctx_.drop_out(target)) return done(false);
  struct State {
    tcp::socket sock;
    asio::steady_timer timer;
    std::shared_ptr<Conn> conn;
    ProbeDone done;
    bool finished = false;
    explicit State(asio::io_context& io) : sock(io), timer(io) {}
    void finish(bool ok) {
      if (finished) return;
      finished = true;
      timer.cancel();
      boost::system::error_code ec;
      sock.close(ec);
      if (conn) conn->close();
      done(ok);
    }
  };
  auto st = std::make_shared<State>(ctx_.io);
  st->done = std::move(done);
  auto nonce = ctx_.counters.probes;
  st->timer.expires_after(ctx_.config.probe_timeout);
  st->timer.async_wait([st](auto ec) {
    if (!ec) st->finish(false);
  });
  st->sock.async_connect(tcp::endpoint(asio::ip::make_address(ep->host), ep->port), [this, st, nonce, target](auto ec) {
    if (ec || st->finished) return st->finish(false);
    st->conn = std::make_shared<Conn>(std::move(st->sock), ctx_.crypto, true, conn_counters_, 4096);
    st->conn->start(
        [st, nonce, target](Conn&, std::uint8_t type, std::string_view body) {
          Envelope<Probe> e;
          st->finish(type == static_cast<std::uint8_t>(MsgType::probe_ack) && decode(body, e) &&
                     e.msg.nonce == nonce && e.from.node == target && e.msg.target == target);
        },
        [st](Conn&) { st->finish(false); });
    st->conn->send_frame(ctx_.frame(MsgType::probe, Probe{nonce, target}));
  });
}

void PeerLinks::close_all() {
  for (auto& [id, link] : links_)
    if (link.conn) link.conn->close();
  auto in = inbound_;
  for (const auto& c : in) c->close();
  auto relays = relays_;
  for (const auto& c : relays) c->close();
}

}  // namespace rg::grid
