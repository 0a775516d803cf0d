// Node: TCP links to peers, the TCP message dispatch, and probes.
#include <boost/asio/connect.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/write.hpp>
#include <fmt/format.h>

#include "common/log.h"
#include "grid/envelope.h"
#include "grid/node.h"

namespace rg::grid {

namespace asio = boost::asio;
using asio::ip::tcp;

namespace {
constexpr std::size_t kMaxBacklog = 64 * 1024 * 1024;
}

template <class M>
std::string Node::frame(MsgType type, const M& msg) const {
  std::string out;
  auto start = auth_.begin(out);
  encode_into(out, Envelope<M>{Sender{config_.node, incarnation_}, msg});
  auth_.seal(out, start, static_cast<std::uint8_t>(type));
  return out;
}

Conn* Node::route(const NodeId& peer) {
  auto it = links_.find(peer);
  if (it != links_.end() && it->second.conn && it->second.conn->open()) return it->second.conn.get();
  auto r = reverse_.find(peer);
  if (r != reverse_.end()) {
    if (auto c = r->second.lock(); c && c->open()) return c.get();
    reverse_.erase(r);
  }
  return nullptr;
}

template <class M>
void Node::send_peer(const NodeId& peer, MsgType type, const M& msg) {
  if (faults_ && faults_->drop_out(peer)) return;
  if (Conn* c = route(peer)) {
    // Built in place in the connection's queue: no copy.
    auto& out = c->out_buffer();
    auto start = auth_.begin(out);
    encode_into(out, Envelope<M>{Sender{config_.node, incarnation_}, msg});
    auth_.seal(out, start, static_cast<std::uint8_t>(type));
    c->flush();
    return;
  }
  send_peer_frame(peer, frame(type, msg));
}

void Node::send_peer_frame(const NodeId& peer, const std::string& f) {
  if (faults_ && faults_->drop_out(peer)) return;
  if (Conn* c = route(peer)) {
    c->send_frame(f);
    return;
  }
  auto it = links_.find(peer);
  if (it == links_.end()) return;
  auto& link = it->second;
  if (link.backlog.size() + f.size() > kMaxBacklog) {
    ++counters_.link_queue_drops;
    return;
  }
  link.backlog.append(f);
  if (!link.connecting) connect_peer(peer);
}

void Node::connect_peer(const NodeId& peer) {
  auto& link = links_[peer];
  if (link.connecting || (link.conn && link.conn->open())) return;
  auto ep = parse_endpoint(link.address);
  if (!ep) return;
  link.connecting = true;
  auto sock = std::make_shared<tcp::socket>(io_);
  tcp::endpoint to(asio::ip::make_address(ep->host), ep->port);
  auto inc = link.incarnation;
  sock->async_connect(to, [this, sock, peer, inc](auto ec) {
    auto it = links_.find(peer);
    if (it == links_.end() || leaving_) return;
    auto& l = it->second;
    l.connecting = false;
    if (ec || l.incarnation != inc) {
      l.retry_at = Clock::now() + milliseconds(100);
      return;
    }
    l.conn = std::make_shared<Conn>(std::move(*sock), auth_, conn_counters_, kMaxStreamBody);
    l.conn->tag = peer;
    l.conn->start([this](Conn& c, std::uint8_t type, std::string_view body) { on_frame(&c, type, body); },
                  [this, peer](Conn& c) {
                    auto it2 = links_.find(peer);
                    if (it2 != links_.end() && it2->second.conn.get() == &c) {
                      it2->second.conn.reset();
                      it2->second.retry_at = Clock::now() + milliseconds(50);
                    }
                  });
    // Every (re)connection restates where this peer's stream starts.
    if (auto start = sender_.peer_start(peer)) send_peer(peer, MsgType::hello, Hello{*start});
    if (!l.backlog.empty()) {
      std::string backlog;
      backlog.swap(l.backlog);
      l.conn->send_frame(backlog);
    }
  });
}

void Node::close_peer(const NodeId& peer) {
  auto it = links_.find(peer);
  if (it == links_.end()) return;
  it->second.backlog.clear();
  if (auto c = it->second.conn) {
    it->second.conn.reset();
    c->close();
  }
}

void Node::probe(const ProbeOrder& order) {
  ++counters_.probes;
  auto nonce = order.nonce;
  auto report = [this, nonce](bool reached) {
    if (leaving_) return;
    auto now = Clock::now();
    membership_.on_probe_result(nonce, reached, now, mout_);
    drain_membership(now);
  };
  if (order.via.empty()) {
    direct_probe(order.target, order.address, report);
    return;
  }
  if (faults_ && faults_->drop_out(order.via)) return;  // lost: membership's deadline decides
  // Indirect: ask `via` to probe the target and tell us. No answer in time
  // counts as a failed probe (membership's own deadline covers that).
  relay_waits_[nonce] = report;
  auto sock = std::make_shared<tcp::socket>(io_);
  auto ep = parse_endpoint(order.via_address);
  if (!ep) return;
  auto msg = frame(MsgType::probe_relay, ProbeRelay{nonce, order.target, order.address});
  sock->async_connect(tcp::endpoint(asio::ip::make_address(ep->host), ep->port),
                      [this, sock, msg, nonce](auto ec) {
                        if (ec || leaving_) {
                          auto it = relay_waits_.find(nonce);
                          if (it != relay_waits_.end()) {
                            auto fn = std::move(it->second);
                            relay_waits_.erase(it);
                            fn(false);
                          }
                          return;
                        }
                        auto c = std::make_shared<Conn>(std::move(*sock), auth_, conn_counters_, 4096);
                        inbound_.insert(c);
                        c->start([this](Conn& conn, std::uint8_t type, std::string_view body) { on_frame(&conn, type, body); },
                                 [this](Conn& conn) { inbound_.erase(conn.shared_from_this()); });
                        c->send_frame(msg);
                      });
}

void Node::direct_probe(const NodeId& target, const std::string& address, std::function<void(bool)> done) {
  auto ep = parse_endpoint(address);
  if (!ep) return done(false);
  if (faults_ && faults_->drop_out(target)) return done(false);
  struct State {
    tcp::socket sock;
    asio::steady_timer timer;
    std::function<void(bool)> done;
    std::string out, in;
    bool finished = false;
    State(asio::io_context& io) : sock(io), timer(io) {}
    void finish(bool ok) {
      if (finished) return;
      finished = true;
      boost::system::error_code ec;
      timer.cancel();
      sock.close(ec);
      done(ok);
    }
  };
  auto st = std::make_shared<State>(io_);
  st->done = std::move(done);
  std::uint64_t nonce = counters_.probes;
  st->out = frame(MsgType::probe, Probe{nonce});
  st->timer.expires_after(config_.probe_timeout);
  st->timer.async_wait([st](auto ec) {
    if (!ec) st->finish(false);
  });
  st->sock.async_connect(tcp::endpoint(asio::ip::make_address(ep->host), ep->port), [this, st](auto ec) {
    if (ec) return st->finish(false);
    asio::async_write(st->sock, asio::buffer(st->out), [this, st](auto ec2, std::size_t) {
      if (ec2) return st->finish(false);
      st->in.resize(kHeaderSize);
      asio::async_read(st->sock, asio::buffer(st->in), [this, st](auto ec3, std::size_t) {
        FrameHeader h;
        bool ok = !ec3 && auth_.check_header(st->in, 4096, h) == FrameError::ok &&
                  h.type == static_cast<std::uint8_t>(MsgType::probe_ack);
        st->finish(ok);
      });
    });
  });
}

void Node::on_frame(Conn* conn, std::uint8_t raw_type, std::string_view body) {
  auto now = Clock::now();
  auto type = static_cast<MsgType>(raw_type);
  auto bad = [&] {
    ++counters_.decode_errors;
    conn->close();
  };
  Sender from;
  {
    Envelope<SyncRequest> head;  // decodes just the sender
    if (!decode(body, head)) return bad();
    from = head.from;
  }
  // Fault rules cover everything from a peer, probes included: a cut made
  // with them must look like a partition to the failure detector too.
  if (faults_ && !fault_bypass_ && from.node != config_.node &&
      fault_in(from.node, [this, back = conn->weak_from_this(), raw_type, copy = std::string(body)] {
        if (auto c = back.lock()) on_frame(c.get(), raw_type, copy);
      }))
    return;
  switch (type) {
    case MsgType::probe: {
      Envelope<Probe> e;
      if (!decode(body, e)) return bad();
      conn->send_frame(frame(MsgType::probe_ack, e.msg));
      return;
    }
    case MsgType::probe_relay: {
      Envelope<ProbeRelay> e;
      if (!decode(body, e)) return bad();
      std::weak_ptr<Conn> back = conn->weak_from_this();
      auto nonce = e.msg.nonce;
      direct_probe(e.msg.target, e.msg.address, [this, back, nonce](bool reached) {
        if (auto c = back.lock()) c->send_frame(frame(MsgType::probe_relay_result, ProbeRelayResult{nonce, reached}));
      });
      return;
    }
    case MsgType::probe_relay_result: {
      Envelope<ProbeRelayResult> e;
      if (!decode(body, e)) return bad();
      conn->close();
      auto it = relay_waits_.find(e.msg.nonce);
      if (it == relay_waits_.end()) return;
      auto fn = std::move(it->second);
      relay_waits_.erase(it);
      fn(e.msg.reached);
      return;
    }
    case MsgType::leave: {
      Envelope<Leave> e;
      if (!decode(body, e)) return bad();
      membership_.on_leave(e.from.node, e.from.incarnation, now, mout_);
      drain_membership(now);
      return;
    }
    default:
      break;
  }
  // Everything else comes from a current member over a link.
  // The data plane (stream and acks) accepts any member of the topology,
  // even one whose heartbeat has not arrived yet: a joiner must not stall
  // the writers while it waits to hear them. Everything else needs a member
  // this node knows.
  if (from.node == config_.node || !topology_.contains(from.node)) {
    ++counters_.refused_messages;
    return;
  }
  bool known = heard(from, now);
  if (conn->tag.empty()) reverse_[from.node] = conn->weak_from_this();
  switch (type) {
    case MsgType::hello: {
      Envelope<Hello> e;
      if (!decode(body, e)) return bad();
      receiver_.on_hello(from.node, from.incarnation, e.msg.start);
      acks_due_.insert(from.node);
      schedule_flush();
      return;
    }
    case MsgType::data: {
      Envelope<Data> e;
      if (!decode(body, e)) return bad();
      on_data(from, e.msg, now);
      return;
    }
    case MsgType::ack: {
      Envelope<Ack> e;
      if (!decode(body, e)) return bad();
      sender_.on_ack(from.node, e.msg.next, now);
      complete_writes();
      return;
    }
    case MsgType::nak: {
      Envelope<Nak> e;
      if (!decode(body, e)) return bad();
      ++counters_.naks_received;
      send_resend(sender_.on_nak(from.node, e.msg.from, e.msg.to, now));
      return;
    }
    default:
      break;
  }
  if (!known) {
    ++counters_.refused_messages;
    return;
  }
  switch (type) {
    case MsgType::reset: {
      Envelope<Reset> e;
      if (!decode(body, e)) return bad();
      ++counters_.resets;
      receiver_.on_reset(from.node, from.incarnation, e.msg.next);
      acks_due_.insert(from.node);
      schedule_flush();
      send_digests(from.node);
      return;
    }
    case MsgType::q_prepare:
    case MsgType::q_promise:
    case MsgType::q_accept:
    case MsgType::q_accepted:
    case MsgType::q_commit:
    case MsgType::q_recover_request:
    case MsgType::q_recover_state:
      on_quorum_message(type, from, body, now);
      return;
    case MsgType::app: {
      Envelope<AppMessage> e;
      if (!decode(body, e)) return bad();
      if (faults_ && faults_->drop_channel_in(e.msg.channel)) {
        ++faults_->dropped;
        return;
      }
      auto it = app_fns_.find(e.msg.channel);
      if (it != app_fns_.end()) it->second(from.node, e.msg.payload);
      return;
    }
    case MsgType::sync_request:
    case MsgType::sync_regions:
    case MsgType::bucket_request:
    case MsgType::bucket_data:
    case MsgType::digests:
    case MsgType::digest_diff:
    case MsgType::key_stamps:
    case MsgType::want:
      on_sync_message(type, from, body, now);
      return;
    default:
      ++counters_.decode_errors;
      return;
  }
}

// The templates are used from the other node_*.cpp files.
template void Node::send_peer(const NodeId&, MsgType, const Hello&);
template void Node::send_peer(const NodeId&, MsgType, const Ack&);
template void Node::send_peer(const NodeId&, MsgType, const Nak&);
template void Node::send_peer(const NodeId&, MsgType, const Reset&);
template void Node::send_peer(const NodeId&, MsgType, const SyncRequest&);
template void Node::send_peer(const NodeId&, MsgType, const SyncRegions&);
template void Node::send_peer(const NodeId&, MsgType, const BucketRequest&);
template void Node::send_peer(const NodeId&, MsgType, const BucketData&);
template void Node::send_peer(const NodeId&, MsgType, const Digests&);
template void Node::send_peer(const NodeId&, MsgType, const DigestDiff&);
template void Node::send_peer(const NodeId&, MsgType, const KeyStamps&);
template void Node::send_peer(const NodeId&, MsgType, const Want&);
template void Node::send_peer(const NodeId&, MsgType, const QPrepare&);
template void Node::send_peer(const NodeId&, MsgType, const QPromise&);
template void Node::send_peer(const NodeId&, MsgType, const QAccept&);
template void Node::send_peer(const NodeId&, MsgType, const QAccepted&);
template void Node::send_peer(const NodeId&, MsgType, const QCommit&);
template void Node::send_peer(const NodeId&, MsgType, const AppMessage&);
template void Node::send_peer(const NodeId&, MsgType, const QRecoverRequest&);
template void Node::send_peer(const NodeId&, MsgType, const QRecoverState&);
template std::string Node::frame(MsgType, const Heartbeat&) const;
template std::string Node::frame(MsgType, const Refuse&) const;
template std::string Node::frame(MsgType, const Leave&) const;

}  // namespace rg::grid
