// Node: the quorum registers' transport, and messages of the layers above.
#include <boost/asio/post.hpp>
#include <fmt/format.h>
#include <fmt/ranges.h>

#include "common/log.h"
#include "grid/envelope.h"
#include "grid/node.h"

namespace rg::grid {

void Node::cas(const std::string& key, QuorumProposer::Change change, CasDone done) {
  auto op = proposer_.cas(key, std::move(change), Clock::now(), qout_);
  cas_waits_[op] = std::move(done);
  QOut out;
  std::swap(out, qout_);
  quorum_send(out);
}

void Node::quorum_send(const QOut& out) {
  auto now = Clock::now();
  for (const auto& s : out.sends) {
    std::visit(
        [&](const auto& msg) {
          using M = std::decay_t<decltype(msg)>;
          MsgType type = std::is_same_v<M, QPrepare> ? MsgType::q_prepare
                         : std::is_same_v<M, QAccept> ? MsgType::q_accept
                                                       : MsgType::q_commit;
          auto deliver_self = [this, type, msg] {
            // Our own acceptor answers through the loop, never re-entrantly.
            boost::asio::post(io_, [this, type, msg] {
              Sender self{config_.node, incarnation_};
              std::string body = encode(Envelope<M>{self, msg});
              on_quorum_message(type, self, body, Clock::now());
            });
          };
          if (s.to.empty()) {
            deliver_self();
            for (const auto& id : topology_.members())
              if (id != config_.node && membership_.is_alive(id)) send_peer(id, type, msg);
          } else if (s.to == config_.node) {
            deliver_self();
          } else {
            send_peer(s.to, type, msg);
          }
        },
        s.msg);
  }
  for (const auto& r : out.results) {
    auto it = cas_waits_.find(r.op);
    if (it == cas_waits_.end()) continue;
    auto fn = std::move(it->second);
    cas_waits_.erase(it);
    fn(r);
  }
  (void)now;
}

void Node::on_quorum_message(MsgType type, const Sender& from, std::string_view body, Time now) {
  auto bad = [&] { ++counters_.decode_errors; };
  switch (type) {
    case MsgType::q_prepare:
    case MsgType::q_accept:
    case MsgType::q_recover_request:
    case MsgType::q_recover_state:
      on_acceptor_message(type, from, body, now);
      log_acceptor_events();
      break;
    case MsgType::q_promise: {
      Envelope<QPromise> e;
      if (!decode(body, e)) return bad();
      proposer_.on_promise(from.node, e.msg, now, qout_);
      break;
    }
    case MsgType::q_accepted: {
      Envelope<QAccepted> e;
      if (!decode(body, e)) return bad();
      proposer_.on_accepted(from.node, e.msg, now, qout_);
      break;
    }
    case MsgType::q_commit: {
      Envelope<QCommit> e;
      if (!decode(body, e)) return bad();
      if (quorum_copy_.apply(e.msg))
        for (const auto& fn : quorum_fns_) fn(e.msg);
      return;
    }
    default:
      return;
  }
  QOut out;
  std::swap(out, qout_);
  quorum_send(out);
}

// The acceptor's messages. AcceptorHost answers nothing while it recovers
// or cannot make a change durable (the proposers' resends and timeouts
// cover the silence); our own proposer gets its answers directly.
void Node::on_acceptor_message(MsgType type, const Sender& from, std::string_view body, Time now) {
  auto bad = [&] { ++counters_.decode_errors; };
  const bool self = from.node == config_.node;
  switch (type) {
    case MsgType::q_prepare: {
      Envelope<QPrepare> e;
      if (!decode(body, e)) return bad();
      auto reply = acceptors_.on_prepare(e.msg, now);
      if (!reply) return;
      if (self) return proposer_.on_promise(from.node, *reply, now, qout_);
      return send_peer(from.node, MsgType::q_promise, *reply);
    }
    case MsgType::q_accept: {
      Envelope<QAccept> e;
      if (!decode(body, e)) return bad();
      auto reply = acceptors_.on_accept(e.msg, now);
      if (!reply) return;
      if (self) return proposer_.on_accepted(from.node, *reply, now, qout_);
      return send_peer(from.node, MsgType::q_accepted, *reply);
    }
    case MsgType::q_recover_request: {
      Envelope<QRecoverRequest> e;
      if (!decode(body, e)) return bad();
      if (auto answer = acceptors_.on_recover_request(e.msg, now))
        send_peer(from.node, MsgType::q_recover_state, *answer);
      return;
    }
    case MsgType::q_recover_state: {
      Envelope<QRecoverState> e;
      if (!decode(body, e)) return bad();
      acceptors_.on_recover_state(from.node, e.msg, now);
      return;
    }
    default:
      return;
  }
}

// Every loop turn: the proposer's timeouts and resends, the acceptor's
// retried save and its recovery requests (to members we can reach).
void Node::quorum_tick(Time now) {
  acceptors_.tick(now);
  for (const auto& id : acceptors_.requests_due(now))
    if (membership_.is_alive(id)) send_peer(id, MsgType::q_recover_request, acceptors_.request());
  log_acceptor_events();
  proposer_.tick(now, qout_);
  if (qout_.sends.empty() && qout_.results.empty()) return;
  QOut out;
  std::swap(out, qout_);
  quorum_send(out);
}

void Node::log_acceptor_events() {
  for (const auto& e : acceptors_.take_events()) {
    if (e.starts_with("+disk-fault"))
      log::error("{}", e);
    else
      log::info("{}", e);
  }
}

bool Node::save_note(const std::string& name, const std::string& value) {
  bool ok = acceptors_.set_note(name, value);
  log_acceptor_events();
  return ok;
}

void Node::push_commits(const NodeId& peer) {
  for (const auto& [key, c] : quorum_copy_.all()) send_peer(peer, MsgType::q_commit, c);
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
  send_peer(peer, MsgType::app, AppMessage{channel, payload});
}

void Node::broadcast_app(const std::string& channel, const std::string& payload) {
  if (faults_ && faults_->drop_channel_out(channel)) {
    ++faults_->dropped;
    return;
  }
  for (const auto& id : membership_.alive()) send_peer(id, MsgType::app, AppMessage{channel, payload});
}

}  // namespace rg::grid
