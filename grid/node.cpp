#include "grid/node.h"

#include <chrono>

#include <boost/asio/ip/multicast.hpp>
#include <boost/asio/post.hpp>
#include <fmt/format.h>

#include "common/log.h"
#include "grid/envelope.h"

namespace rg::grid {

namespace asio = boost::asio;
using asio::ip::tcp;
using asio::ip::udp;

namespace {

Incarnation new_incarnation() {
  // Wall-clock microseconds: grows across restarts of the process without
  // any state on disk. Only the shell reads it; cores get it passed in.
  return static_cast<Incarnation>(std::chrono::duration_cast<std::chrono::microseconds>(
                                      std::chrono::system_clock::now().time_since_epoch())
                                      .count());
}

MembershipConfig membership_config(const NodeConfig& c) {
  MembershipConfig m;
  m.heartbeat_interval = c.heartbeat_interval;
  m.failure_timeout = c.failure_timeout;
  m.probe_timeout = c.probe_timeout;
  // A stall of half the failure timeout is already enough to make us accuse
  // healthy peers a moment later; treat it as a stall.
  m.stall_threshold = std::max<Duration>(c.failure_timeout / 2, 3 * c.heartbeat_interval);
  return m;
}

SessionLimits session_limits(const NodeConfig& c) {
  SessionLimits l;
  // A peer's datagrams and TCP traffic count as signs of life for one
  // failure timeout after it last proved itself: a held-back backlog cannot
  // stretch a dead node's life by more than that.
  l.proof_age = c.failure_timeout;
  return l;
}

udp::endpoint to_udp(const std::string& address) {
  auto ep = parse_endpoint(address);
  if (!ep) return {};
  return udp::endpoint(asio::ip::make_address(ep->host), ep->port);
}

}  // namespace

Node::Node(asio::io_context& io, NodeConfig config)
    : io_(io),
      config_(std::move(config)),
      crypto_(cluster_id_of(config_.cluster), derive_ring(config_.cluster, config_.secrets, KeyUse::peer)),
      admin_crypto_(cluster_id_of(config_.cluster), derive_ring(config_.cluster, config_.secrets, KeyUse::admin)),
      sessions_(session_limits(config_)),
      topology_(config_.members),
      self_index_(*topology_.index_of(config_.node)),
      incarnation_(new_incarnation()),
      membership_(topology_, config_.node, incarnation_, config_.listen.str(), membership_config(config_),
                  Clock::now()),
      udp_(io),
      acceptor_(io),
      timer_(io),
      ctx_{io, config_, crypto_, Sender{config_.node, incarnation_}, counters_, faults_},
      links_(ctx_, conn_counters_,
             [this](Conn& c, std::uint8_t type, std::string_view body) { on_frame(&c, type, body); }),
      writes_(ctx_, self_index_, store_, links_,
              config_.multicast ? WritePath::Multicast([this](std::string& d) { seal_and_send(group_, d); })
                                : WritePath::Multicast()),
      sync_(ctx_, store_, membership_, links_),
      quorum_(ctx_, topology_, membership_, links_) {
  started_ = Clock::now();
  // Each life's Lamport clock starts at the wall clock in microseconds, not
  // at 0: a version this life stamps before it has copied the grid (or
  // while it hears no one) must not equal one its earlier life stamped, or
  // the two values of that key would never converge. The clock advances by
  // one per write seen, fewer than one a microsecond, so an earlier life's
  // versions stay below a later life's start unless the wall clock stepped
  // back further than the node was down.
  store_.raise_clock(static_cast<std::uint64_t>(
      std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::system_clock::now().time_since_epoch())
          .count()));
  if (config_.fault_injection) faults_.emplace(incarnation_);
  // Every (re)connection restates where this peer's stream starts.
  links_.on_connected([this](const NodeId& peer) { writes_.restate(peer); });
  quorum_.on_config([this](const ConfigRecord& r) { adopt_config(r); });
  quorum_.on_stale([this](const NodeId& who) {
    if (const auto* m = membership_.find(who)) ask_config(m->address, Clock::now());
  });
  // The data dir's configuration, past version 1, wins over --members.
  const Topology& saved = quorum_.acceptors().topology();
  if (saved.version() > topology_.version()) {
    if (!saved.contains(config_.node))
      throw std::invalid_argument(fmt::format(
          "--data-dir {}: this node was removed from the cluster's members at configuration version {}; to add it "
          "again, run `rolegridctl member add {}` and start it with an empty data dir",
          config_.data_dir, saved.version(), config_.node));
    adopt_config(ConfigRecord::of(saved, false));
  }
  open_sockets();
  register_admin();
}

Node::~Node() = default;

void Node::open_sockets() {
  auto fail = [](const std::string& what, const std::string& where, const boost::system::system_error& e) {
    throw std::runtime_error(fmt::format("cannot {} {}: {}", what, where, e.code().message()));
  };
  auto host = asio::ip::make_address(config_.listen.host);
  try {
    udp_.open(udp::v4());
    udp_.bind(udp::endpoint(host, config_.listen.port));
    udp_.non_blocking(true);
  } catch (const boost::system::system_error& e) {
    fail("bind UDP", config_.listen.str(), e);
  }
  try {
    tcp::endpoint ep(host, config_.listen.port);
    acceptor_.open(ep.protocol());
    acceptor_.set_option(asio::socket_base::reuse_address(true));
    acceptor_.bind(ep);
    acceptor_.listen();
  } catch (const boost::system::system_error& e) {
    fail("listen on TCP", config_.listen.str(), e);
  }
  try {
    admin_ = std::make_unique<AdminServer>(io_, config_.admin, admin_crypto_, conn_counters_);
  } catch (const boost::system::system_error& e) {
    fail("listen on admin", config_.admin.str(), e);
  }
  if (config_.multicast) {
    group_ = udp::endpoint(asio::ip::make_address(config_.multicast->host), config_.multicast->port);
    try {
      mcast_.emplace(io_);
      mcast_->open(udp::v4());
      mcast_->set_option(asio::socket_base::reuse_address(true));
      mcast_->set_option(asio::socket_base::receive_buffer_size(static_cast<int>(config_.multicast_rcvbuf)));
      asio::socket_base::receive_buffer_size granted;
      mcast_->get_option(granted);
      rcvbuf_granted_ = static_cast<std::size_t>(granted.value());
      mcast_->bind(group_);
      mcast_->non_blocking(true);
      mcast_->set_option(asio::ip::multicast::join_group(group_.address().to_v4(), host.to_v4()));
      if (!drop_datagrams_from(*mcast_, udp::endpoint(host, config_.listen.port)))
        log::debug("no socket filter for our own multicast: its copies are dropped after a read");
      // Sent from the unicast socket so the source is our listen address;
      // TTL 1 and the listen interface keep it on the local link.
      udp_.set_option(asio::ip::multicast::outbound_interface(host.to_v4()));
      udp_.set_option(asio::ip::multicast::hops(1));
      udp_.set_option(asio::ip::multicast::enable_loopback(true));
      udp_.set_option(asio::socket_base::send_buffer_size(static_cast<int>(config_.multicast_rcvbuf)));
    } catch (const boost::system::system_error& e) {
      fail("join multicast group", config_.multicast->str() + " on " + config_.listen.host, e);
    }
  }
  udp_.set_option(asio::socket_base::receive_buffer_size(static_cast<int>(config_.multicast_rcvbuf)));
}

void Node::start() {
  auto now = Clock::now();
  sync_.start(now);
  next_heartbeat_ = now;
  auto datagram = [this](char* bytes, std::size_t size) {
    ++counters_.datagrams_in;
    on_datagram(bytes, size);
  };
  udp_reader_.emplace(udp_, datagram);
  udp_reader_->start();
  if (mcast_) {
    mcast_reader_.emplace(*mcast_, datagram);
    mcast_reader_->start();
  }
  accept_tcp();
  quorum_.log_start();
  log::info("started: incarnation {} listen {} admin {} {} (rcvbuf {} B)", incarnation_, config_.listen.str(),
            config_.admin.str(),
            config_.multicast ? "multicast " + config_.multicast->str() : "unicast seeds",
            rcvbuf_granted_);
  tick();
}

void Node::accept_tcp() {
  accept_connections(acceptor_, [this](tcp::socket s) { links_.adopt(std::move(s)); });
}

bool Node::heard(const Sender& s, Time now) {
  // Traffic other than heartbeats refreshes a known member (and restores a
  // failed one) but never introduces one: that takes a heartbeat.
  const auto* m = membership_.find(s.node);
  if (!m || m->incarnation != s.incarnation || m->state == MemberState::left) return false;
  // Liveness only while the process answered a challenge lately: a TCP
  // stream held back and released after its sender died refreshes nothing.
  if (sessions_.proven(s, now)) {
    membership_.on_heard(s.node, s.incarnation, m->address, topology_.fingerprint(), now, mout_);
    drain_membership(now);
  }
  return true;
}

bool Node::fault_in(const NodeId& from, std::function<void()> redo) {
  if (faults_->drop_in(from)) return true;
  auto delay = faults_->delay_in(from);
  if (delay <= Duration::zero()) return false;
  ++faults_->delayed;
  auto t = std::make_shared<boost::asio::steady_timer>(io_, delay);
  t->async_wait([this, t, redo = std::move(redo)](auto ec) {
    if (ec || ctx_.leaving) return;
    fault_bypass_ = true;
    redo();
    fault_bypass_ = false;
  });
  return true;
}

void Node::drain_membership(Time now) {
  if (mout_.events.empty() && mout_.probes.empty() && mout_.refusals.empty()) return;
  MembershipOutput out;
  std::swap(out, mout_);
  for (const auto& r : out.refusals) log::warn("refusing {}: {} (no heartbeat to answer)", r.address, r.reason);
  for (const auto& p : out.probes) probe(p);
  for (const auto& e : out.events) on_event(e, now);
}

void Node::on_event(const MembershipEvent& e, Time now) {
  log::info("+member-{} {} incarnation {} at {}", to_string(e.kind), e.id, e.incarnation, e.address);
  switch (e.kind) {
    case MemberEvent::joined: {
      // Our next heartbeat may be up to an interval away, and until the
      // newcomer has one it drops our datagrams (it cannot verify our
      // session): the writes that now wait for its acknowledgement stalled
      // that long (43 ms of a 100 ms interval in bench-grid's state transfer).
      send_udp(to_udp(e.address), frame(MsgType::heartbeat, heartbeat()));
      writes_.add_peer(e.id, now);
      links_.joined(e.id, e.address, e.incarnation);
      quorum_.push_commits(e.id);
      break;
    }
    case MemberEvent::restored: {
      // Back from failed, it missed writes that completed without it: restart
      // its stream and reconcile what each side wrote meanwhile. Back from
      // suspected, writes still waited for it: its stream goes on (restarting
      // it lost an acknowledged write in a soak: the receiver skipped to the
      // new start over a write it never got).
      bool was_dropped = !writes_.sender().peer_start(e.id);
      writes_.restore_peer(e.id, now);
      if (links_.restored(e.id, e.address)) writes_.restate(e.id);
      if (was_dropped) {
        sync_.restored(e.id, now);
      } else {
        sync_.send_digests(e.id);
      }
      quorum_.push_commits(e.id);
      break;
    }
    case MemberEvent::suspected:
      break;
    case MemberEvent::failed:
    case MemberEvent::left:
      links_.lost(e.id);
      writes_.remove_peer(e.id);
      sync_.lost(e.id);
      break;
  }
  for (const auto& fn : member_fns_) fn(e);
}

void Node::send_udp(const udp::endpoint& to, const std::string& frame) {
  udp_out_.assign(frame);
  seal_and_send(to, udp_out_);
}

void Node::seal_and_send(const udp::endpoint& to, std::string& frame) {
  if (to.port() == 0) return;
  // Each send takes a counter of its own (the receivers' replay windows
  // count datagrams, and the counter is half the nonce).
  crypto_.seal(frame.data());
  boost::system::error_code ec;
  udp_.send_to(asio::buffer(frame), to, 0, ec);
  if (ec) ++counters_.send_errors;
  else ++counters_.datagrams_out;
}

void Node::send_udp(const std::string& address, const std::string& frame) { send_udp(to_udp(address), frame); }

void Node::broadcast_udp(const std::string& frame) {
  if (mcast_) {
    send_udp(group_, frame);
    return;
  }
  std::set<std::string> sent;
  for (const auto& s : config_.seeds) {
    if (s == config_.listen) continue;
    if (sent.insert(s.str()).second) send_udp(to_udp(s.str()), frame);
  }
  for (const auto& [id, m] : membership_.members())
    if (!m.address.empty() && m.state != MemberState::left && sent.insert(m.address).second)
      send_udp(to_udp(m.address), frame);
}

Heartbeat Node::heartbeat() const {
  return Heartbeat{config_.listen.str(), config_.admin.str(), topology_.fingerprint(), sync_.transfer().synced,
                   writes_.sender().next_seq(), topology_.version()};
}

void Node::send_heartbeat(Time) { broadcast_udp(frame(MsgType::heartbeat, heartbeat())); }

void Node::tick() {
  auto now = Clock::now();
  if (now >= next_heartbeat_) {
    send_heartbeat(now);
    membership_.tick(now, mout_);
    drain_membership(now);
    next_heartbeat_ = now + config_.heartbeat_interval;
    sync_.tick(now, writes_.last_write());
  }
  quorum_.tick(now);
  confirm_origin_when_ready(now);
  writes_.tick(now);
  // Peers whose link dropped are reconnected while they are alive.
  links_.reconnect(now, [this](const NodeId& id) { return membership_.is_alive(id); });
  timer_.expires_after(milliseconds(10));
  timer_.async_wait([this](auto ec) {
    if (!ec && !ctx_.leaving) tick();
  });
}

void Node::leave(std::function<void()> done) {
  if (ctx_.leaving) return;
  writes_.fail_held("node is leaving the cluster");
  writes_.flush();
  auto bye = frame(MsgType::leave, Leave{});
  broadcast_udp(bye);
  links_.send_to_all(bye);
  ctx_.leaving = true;
  log::info("+leaving the cluster");
  // Give the TCP goodbyes a moment to leave the socket buffers.
  timer_.cancel();
  timer_.expires_after(milliseconds(50));
  timer_.async_wait([this, done = std::move(done)](auto) {
    boost::system::error_code ec;
    udp_.close(ec);
    if (mcast_) mcast_->close(ec);
    acceptor_.close(ec);
    admin_->close();
    links_.close_all();
    done();
  });
}

}  // namespace rg::grid
