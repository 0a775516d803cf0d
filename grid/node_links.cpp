// Node: the TCP message dispatch, probes, and the layers above's messages.
#include <boost/asio/post.hpp>
#include <fmt/format.h>

#include "common/log.h"
#include "grid/envelope.h"
#include "grid/node.h"

namespace rg::grid {

namespace asio = boost::asio;
using asio::ip::tcp;

void Node::probe(const ProbeOrder& order) {
  auto nonce = order.nonce;
  links_.probe(order, [this, nonce](bool reached) {
    if (ctx_.leaving) return;
    auto now = Clock::now();
    membership_.on_probe_result(nonce, reached, now, mout_);
    drain_membership(now);
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
      links_.direct_probe(e.msg.target, e.msg.address, [this, back, nonce](bool reached) {
        if (auto c = back.lock()) c->send_frame(frame(MsgType::probe_relay_result, ProbeRelayResult{nonce, reached}));
      });
      return;
    }
    case MsgType::probe_relay_result: {
      Envelope<ProbeRelayResult> e;
      if (!decode(body, e)) return bad();
      conn->close();
      links_.relay_result(e.msg.nonce, e.msg.reached);
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
  links_.heard_on(from.node, *conn);
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
      quorum_.on_message(type, from, body, now);
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

// Messages of the layers above, by channel.
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
