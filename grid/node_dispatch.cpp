// Node: the one dispatcher of every message a node receives, whatever its
// transport (a datagram, or a frame on a TCP connection), its membership
// handlers (heartbeat, refusal, goodbye), probe answers, and the messages of
// the layers above. Each message, once authenticated by its transport,
// is routed to the part that owns it: membership, the links (probes), the
// write path, state transfer, the quorum host, or an app channel.
#include <utility>

#include <boost/asio/ip/address.hpp>
#include <boost/asio/post.hpp>
#include <fmt/format.h>
#include <sodium.h>

#include "common/log.h"
#include "grid/envelope.h"
#include "grid/node.h"

namespace rg::grid {

namespace {

// Membership speaks over datagrams, the stream over both, everything else
// over a link (probes open a connection of their own).
bool allowed(MsgType type, bool datagram) {
  switch (type) {
    case MsgType::heartbeat:
    case MsgType::refuse:
    case MsgType::config_ask:
    case MsgType::config_tell: return datagram;
    case MsgType::leave:
    case MsgType::data: return true;
    default: return !datagram;
  }
}

bool stream_message(MsgType type) {
  return type == MsgType::hello || type == MsgType::data || type == MsgType::ack || type == MsgType::nak;
}

}  // namespace

void Node::on_datagram(char* bytes, std::size_t size) {
  FrameHeader h;
  std::string_view body;
  auto err = crypto_.open(bytes, size, kMaxDatagramBody, h, body);
  if (err != FrameError::ok) {
    if (err == FrameError::bad_mac || err == FrameError::wrong_cluster) ++counters_.unauthenticated;
    else ++counters_.datagrams_dropped;
    return;
  }
  if (h.session == crypto_.session()) return;  // our own multicast, looped back
  auto type = static_cast<MsgType>(h.type);
  auto now = Clock::now();
  Envelope<SyncRequest> head;  // decodes just the sender
  if (!decode(body, head)) {
    ++counters_.decode_errors;
    return;
  }
  // The fault rules cut challenges too, so a cut looks the same to them.
  if (type == MsgType::challenge || type == MsgType::challenge_answer) {
    if (faults_ && faults_->drop_in(head.from.node)) return;
    return on_challenge(h, type, body, now);
  }
  if (faults_ && faults_->replay_hole()) return route(nullptr, type, head.from, body);
  // Only fresh datagrams of a session proven live count: a recording
  // replayed (of a dead process, or of one seen already) has no effect.
  switch (sessions_.check(h.session, h.counter, head.from, now)) {
    case PeerSessions::Verdict::fresh:
      challenge(h.session, type, body, head.from, now);  // renews the proof from a quarter of its age
      return route(nullptr, type, head.from, body);
    case PeerSessions::Verdict::unverified:
    case PeerSessions::Verdict::stale:
      ++counters_.unverified;
      // A refusal names the exact process it stops (id and incarnation), so a
      // replay can only repeat one meant for us; and a refused process may
      // know no address to challenge its refuser at (unicast seeds).
      if (type == MsgType::refuse) return route(nullptr, type, head.from, body);
      if (type == MsgType::heartbeat) sessions_.park(h.session, h.counter, std::string(body));
      return challenge(h.session, type, body, head.from, now);
    default: ++counters_.replayed;
  }
}

// Challenges session `s` if it is due (sessions_ decides), at the listen
// address its sender announced: the one in this heartbeat (authenticated),
// else the member's known one. Never at the packet's source, which anyone
// can forge to steal the challenge.
void Node::challenge(const SessionId& s, MsgType type, std::string_view body, const Sender& from, Time now) {
  if (!sessions_.due(s, now)) return;  // the common case, on every datagram: nothing to do
  std::string to;
  if (type == MsgType::heartbeat) {
    Envelope<Heartbeat> e;
    if (decode(body, e)) to = e.msg.address;
  } else if (const auto* m = membership_.find(from.node)) {
    to = m->address;
  }
  if (to.empty() || !parse_endpoint(to) || ctx_.drop_out(from.node)) return;
  std::uint64_t nonce = 0;
  while (nonce == 0) randombytes_buf(&nonce, sizeof nonce);
  if (!sessions_.challenge(s, nonce, now)) return;
  ++counters_.challenges_sent;
  send_udp(to, frame(MsgType::challenge, Challenge{std::string(bytes_of(s)), nonce, config_.listen.str()}));
}

void Node::on_challenge(const FrameHeader& h, MsgType type, std::string_view body, Time now) {
  if (type == MsgType::challenge) {
    Envelope<Challenge> e;
    if (!decode(body, e) || !parse_endpoint(e.msg.reply_to)) {
      ++counters_.decode_errors;
      return;
    }
    if (e.msg.session != bytes_of(crypto_.session())) return;
    // A replayed challenge gets no second answer; past that, a cap on
    // answers bounds what fresh-looking ones cost.
    if (!challenge_log_.first(h.session, h.counter)) {
      ++counters_.replayed;
      return;
    }
    if (now - answer_window_ >= milliseconds(100)) {
      answer_window_ = now;
      answers_in_window_ = 0;
    }
    if (++answers_in_window_ > challenge_answer_cap(topology_.size(), config_.failure_timeout) ||
        ctx_.drop_out(e.from.node))
      return;
    ++counters_.challenges_answered;
    return send_udp(e.msg.reply_to, frame(MsgType::challenge_answer, ChallengeAnswer{e.msg.nonce}));
  }
  Envelope<ChallengeAnswer> e;
  if (!decode(body, e)) {
    ++counters_.decode_errors;
    return;
  }
  auto parked = sessions_.on_answer(h.session, e.msg.nonce, h.counter, e.from, now);
  if (!parked) return;
  if (!parked->empty()) {
    log::debug("datagram session of {} (incarnation {}) verified", e.from.node, e.from.incarnation);
    dispatch(nullptr, MsgType::heartbeat, *parked);
  }
}

void Node::on_frame(Conn* conn, std::uint8_t type, std::string_view body) {
  dispatch(conn, static_cast<MsgType>(type), body);
}

// `conn`: the connection a frame came on; null for a datagram.
void Node::dispatch(Conn* conn, MsgType type, std::string_view body) {
  Envelope<SyncRequest> head;  // decodes just the sender
  if (allowed(type, conn == nullptr) && !decode(body, head)) return malformed(conn);
  route(conn, type, head.from, body);
}

// The same, once the sender is decoded (on_datagram decodes it first).
void Node::route(Conn* conn, MsgType type, const Sender& from, std::string_view body) {
  if (!allowed(type, conn == nullptr)) {
    ++(conn ? counters_.decode_errors : counters_.datagrams_dropped);
    return;
  }
  auto now = Clock::now();
  // Our link to a peer carries that peer's frames only (a connection
  // redirected to another member is cut).
  if (conn && !conn->tag.empty() && from.node != conn->tag) return malformed(conn);
  // Fault rules cover everything from a peer, probes included: a cut made
  // with them must look like a partition to the failure detector too.
  if (from.node != config_.node && delayed_by_faults(conn, type, from, body)) return;
  switch (type) {
    case MsgType::heartbeat: return on_heartbeat(body, now);
    case MsgType::refuse: return on_refuse(body);
    // From any node of this cluster, a member of ours or not yet (a joiner)
    // or no longer (removed): the configurations differ.
    case MsgType::config_ask:
    case MsgType::config_tell: return on_config_message(type, body);
    case MsgType::leave:
      if (from.node != config_.node) membership_.on_leave(from.node, from.incarnation, now, mout_);
      return drain_membership(now);
    case MsgType::probe:
    case MsgType::probe_relay:
    case MsgType::probe_relay_result: return on_probe_message(*conn, type, body);
    default: break;
  }
  if (from.node == config_.node || !topology_.contains(from.node)) {
    ++counters_.refused_messages;
    return;
  }
  // The data plane (stream and acks) accepts any member of the topology,
  // even one whose heartbeat has not arrived yet: a joiner must not stall
  // the writers while it waits to hear them. Everything else needs a member
  // this node knows.
  bool known = heard(from, now);
  if (conn) links_.heard_on(from.node, *conn);
  if (stream_message(type)) return on_stream_message(conn, type, from, body, now);
  if (!known) {
    ++counters_.refused_messages;
    return;
  }
  on_member_message(conn, type, from, body, now);
}

void Node::malformed(Conn* conn) {
  ++counters_.decode_errors;
  if (conn) conn->close();
}

// True if the rules drop the message, or delay it (it is dispatched again later).
bool Node::delayed_by_faults(Conn* conn, MsgType type, const Sender& from, std::string_view body) {
  if (!faults_ || fault_bypass_) return false;
  std::weak_ptr<Conn> back;
  if (conn) back = conn->weak_from_this();
  return fault_in(from.node, [this, back, datagram = conn == nullptr, type, copy = std::string(body)] {
    if (datagram) return dispatch(nullptr, type, copy);
    if (auto c = back.lock()) dispatch(c.get(), type, copy);
  });
}

void Node::on_heartbeat(std::string_view body, Time now) {
  Envelope<Heartbeat> e;
  if (!decode(body, e) || !valid_node_id(e.from.node) || !parse_endpoint(e.msg.address)) {
    ++counters_.decode_errors;
    return;
  }
  auto before = mout_.refusals.size();
  auto verdict = membership_.on_heard(e.from.node, e.from.incarnation, e.msg.address, e.msg.config_version,
                                      e.msg.topology, now, mout_);
  bool second = verdict == Heard::self_duplicate && e.from.incarnation < incarnation_;
  // Refusals answer this heartbeat: address them to its exact sender.
  for (auto i = before; i < mout_.refusals.size() && !second; ++i) {
    const auto& r = mout_.refusals[i];
    ++counters_.refusals_sent;
    log::warn("refusing {} (incarnation {}) at {}: {}", e.from.node, e.from.incarnation, r.address, r.reason);
    send_udp(r.address, frame(MsgType::refuse, Refuse{e.from.node, e.from.incarnation, r.reason}));
  }
  mout_.refusals.resize(before);
  if (second) {
    // An older process holds our id: we are the second one, so we go.
    mout_.refusals.clear();
    if (fatal_)
      fatal_(fmt::format("node id {} is already live at {} (started earlier); refusing to run a second process "
                         "with the same id",
                         config_.node, e.msg.address));
    return;
  }
  if (verdict != Heard::accepted && verdict != Heard::self && verdict != Heard::other_config)
    ++counters_.refused_messages;
  if (verdict == Heard::accepted || verdict == Heard::other_config)
    compare_config(e.msg.config_version, e.from.node, e.msg.address, now);
  // Removed, the change not settled yet: ask until a member says it is.
  if (!topology_.contains(config_.node) && verdict != Heard::self) ask_config(e.msg.address, now);
  if (verdict == Heard::not_a_member || verdict == Heard::wrong_topology) {
    auto& o = other_list_[e.from.node];
    if (o.incarnation != e.from.incarnation) o = OtherList{e.from.incarnation, false};
    quorum_.heard_other_list(e.from.node);
  }
  if (verdict == Heard::accepted) sync_.heard(e.from.node, e.msg.synced);
  drain_membership(now);
}

void Node::on_refuse(std::string_view body) {
  Envelope<Refuse> e;
  if (!decode(body, e)) {
    ++counters_.decode_errors;
    return;
  }
  // Only a member of our own list may refuse us: a stray process with
  // another member list (which we refuse) must not stop the cluster.
  if (e.msg.target != config_.node || e.msg.target_incarnation != incarnation_ || !topology_.contains(e.from.node)) {
    ++counters_.refused_messages;
    return;
  }
  // A voting node never leaves because of a process it refused itself for
  // running on another member list: nodes restarted on a new list refuse
  // the running cluster's, and before this the whole cluster exited,
  // refused by them. The newcomer, which cannot vote yet, is the one that
  // goes. Any other refusal still stops us (a second process with our id,
  // a node we never heard).
  auto other = other_list_.find(e.from.node);
  bool on_other_list = other != other_list_.end() && other->second.incarnation == e.from.incarnation;
  if (on_other_list && quorum_.acceptors().voting()) {
    ++counters_.refused_messages;
    if (std::exchange(other->second.refusal_logged, true)) return;
    log::warn("{} refuses this node ({}); staying: this node votes, and a refusal stops only a node that does not",
              e.from.node, e.msg.reason);
    return;
  }
  // Removed by a change not settled yet: the others no longer know us, but
  // our slots may still be needed (a recovering member of the configuration
  // before asks for them); we stop by ourselves once it is settled.
  if (!topology_.contains(config_.node)) {
    ++counters_.refused_messages;
    // The refuser may not heartbeat us any more (unicast): ask it directly.
    if (const auto* m = membership_.find(e.from.node)) ask_config(m->address, Clock::now());
    return;
  }
  if (fatal_) fatal_(fmt::format("refused by {}: {}", e.from.node, e.msg.reason));
}

void Node::on_probe_message(Conn& conn, MsgType type, std::string_view body) {
  switch (type) {
    case MsgType::probe: {
      Envelope<Probe> e;
      if (!decode(body, e)) return malformed(&conn);
      if (e.msg.target != config_.node) return conn.close();  // meant for another node
      return conn.send_frame(frame(MsgType::probe_ack, e.msg));
    }
    case MsgType::probe_relay: {
      Envelope<ProbeRelay> e;
      if (!decode(body, e)) return malformed(&conn);
      std::weak_ptr<Conn> back = conn.weak_from_this();
      auto nonce = e.msg.nonce;
      return links_.direct_probe(e.msg.target, e.msg.address, [this, back, nonce](bool reached) {
        if (auto c = back.lock()) c->send_frame(frame(MsgType::probe_relay_result, ProbeRelayResult{nonce, reached}));
      });
    }
    default: {
      Envelope<ProbeRelayResult> e;
      if (!decode(body, e)) return malformed(&conn);
      conn.close();
      links_.relay_result(e.msg.nonce, e.msg.reached);
    }
  }
}

void Node::on_stream_message(Conn* conn, MsgType type, const Sender& from, std::string_view body, Time now) {
  switch (type) {
    case MsgType::hello: {
      Envelope<Hello> e;
      if (!decode(body, e)) return malformed(conn);
      return writes_.on_hello(from, e.msg);
    }
    case MsgType::data: {
      Envelope<Data> e;
      if (!decode(body, e)) return malformed(conn);
      return writes_.on_data(from, e.msg, now);
    }
    case MsgType::ack: {
      Envelope<Ack> e;
      if (!decode(body, e)) return malformed(conn);
      return writes_.on_ack(from.node, e.msg, now);
    }
    default: {
      Envelope<Nak> e;
      if (!decode(body, e)) return malformed(conn);
      return writes_.on_nak(from.node, e.msg, now);
    }
  }
}

void Node::on_member_message(Conn* conn, MsgType type, const Sender& from, std::string_view body, Time now) {
  switch (type) {
    case MsgType::reset: {
      Envelope<Reset> e;
      if (!decode(body, e)) return malformed(conn);
      writes_.on_reset(from, e.msg);
      return sync_.send_digests(from.node);
    }
    case MsgType::q_prepare:
    case MsgType::q_promise:
    case MsgType::q_accept:
    case MsgType::q_accepted:
    case MsgType::q_commit:
    case MsgType::q_recover_request:
    case MsgType::q_recover_state: return quorum_.on_message(type, from, body, now);
    case MsgType::app: {
      Envelope<AppMessage> e;
      if (!decode(body, e)) return malformed(conn);
      return on_app_message(from, e.msg);
    }
    case MsgType::sync_request:
    case MsgType::sync_regions:
    case MsgType::bucket_request:
    case MsgType::bucket_data:
    case MsgType::digests:
    case MsgType::digest_diff:
    case MsgType::key_stamps:
    case MsgType::want: return sync_.on_message(type, from, body);
    default: ++counters_.decode_errors;
  }
}

// --- probes and the messages of the layers above ----------------------------------

void Node::probe(const ProbeOrder& order) {
  auto nonce = order.nonce;
  bool direct = order.via.empty();
  links_.probe(order, [this, nonce, direct, target = order.target, sent = Clock::now()](bool reached) {
    if (ctx_.leaving) return;
    auto now = Clock::now();
    // Answered by the target itself on a fresh connection: it was live when
    // the probe left (so a node whose datagrams are lost does not flap).
    if (reached && direct)
      if (const auto* m = membership_.find(target)) sessions_.prove(Sender{target, m->incarnation}, sent);
    membership_.on_probe_result(nonce, reached, now, mout_);
    drain_membership(now);
  });
}

void Node::on_app_message(const Sender& from, const AppMessage& m) {
  if (faults_ && faults_->drop_channel_in(m.channel)) {
    ++faults_->dropped;
    return;
  }
  auto it = app_fns_.find(m.channel);
  if (it != app_fns_.end()) it->second(from.node, m.payload);
}

void Node::send_app(const NodeId& peer, const std::string& channel, const std::string& payload) {
  if (faults_ && faults_->drop_channel_out(channel)) {
    ++faults_->dropped;
    return;
  }
  if (peer == config_.node) {
    boost::asio::post(io_, [this, channel, payload] {
      auto it = app_fns_.find(channel);
      if (it != app_fns_.end()) it->second(config_.node, payload);
    });
    return;
  }
  links_.send(peer, MsgType::app, AppMessage{channel, payload});
}

void Node::broadcast_app(const std::string& channel, const std::string& payload) {
  if (faults_ && faults_->drop_channel_out(channel)) {
    ++faults_->dropped;
    return;
  }
  for (const auto& id : membership_.alive()) links_.send(id, MsgType::app, AppMessage{channel, payload});
}

}  // namespace rg::grid
