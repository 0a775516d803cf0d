// QuorumHost: the node's proposer, acceptor host and copy of committed
// values, and their messages.
#include "grid/quorum_host.h"

#include <sodium.h>

#include <boost/asio/post.hpp>
#include <fmt/format.h>

#include "common/log.h"

namespace rg::grid {

namespace {

std::unique_ptr<DataDir> open_data_dir(const NodeConfig& c, const Topology& t) {
  if (c.data_dir.empty()) return nullptr;
  return std::make_unique<DataDir>(c.data_dir, c.node, c.cluster, t);
}

// What the data dir holds; nullopt means recover. `said` gets the one line
// log_start() logs.
std::optional<DurableState> load_state(DataDir* dir, std::string& said, bool join) {
  if (!dir) {
    said = "acceptor state in memory only (--in-memory): recovering it from the peers before voting";
    return std::nullopt;
  }
  auto loaded = dir->load();
  // A node added (again) starts empty: a data dir of an earlier life could
  // bring back a value it accepted long ago as one of a minority.
  if (join && loaded.found != DataDir::Found::nothing)
    throw std::invalid_argument(fmt::format(
        "--join: --data-dir {} holds state of an earlier life of this node; a node added to a cluster starts with "
        "an empty data dir (move it away), or drop --join if this node is still a member",
        dir->path()));
  switch (loaded.found) {
    case DataDir::Found::intact: return std::move(loaded.state);
    case DataDir::Found::corrupt:
      said = fmt::format("+state-corrupt: {}; recovering from the peers as a fresh acceptor before voting",
                         loaded.problem);
      return std::nullopt;
    case DataDir::Found::nothing:
      said = fmt::format("data dir {} holds no acceptor state (a first start, or it was lost): recovering from the "
                         "peers before voting", dir->path());
      return std::nullopt;
  }
  return std::nullopt;
}

AcceptorHostConfig acceptor_config(const NodeConfig& c, const Topology& t) {
  AcceptorHostConfig a;
  a.topology = t;
  a.self = c.node;
  a.joining = c.join;
  // The proposer's deadline is failure_timeout / 2; twice that covers any
  // clock rate difference within the drift bound with room to spare.
  a.recovery_wait = c.failure_timeout;
  a.retry_interval = c.heartbeat_interval;
  return a;
}

std::uint64_t random_nonce() {
  std::uint64_t n = 0;
  randombytes_buf(&n, sizeof n);
  return n;
}

QuorumProposerConfig proposer_config(const NodeContext& ctx) {
  // Ballots start above the incarnation (start time in microseconds): a
  // restarted process never reuses a ballot of its earlier life.
  return QuorumProposerConfig{ctx.config.failure_timeout / 2, milliseconds(5), 6, ctx.self.incarnation,
                              ctx.self.incarnation};
}

MsgType type_of(const std::variant<QPrepare, QAccept, QCommit>& m) {
  if (std::holds_alternative<QPrepare>(m)) return MsgType::q_prepare;
  if (std::holds_alternative<QAccept>(m)) return MsgType::q_accept;
  return MsgType::q_commit;
}

}  // namespace

QuorumHost::QuorumHost(NodeContext& ctx, const Topology& topology, const Membership& membership, PeerLinks& links)
    : ctx_(ctx),
      topology_(topology),
      membership_(membership),
      links_(links),
      data_dir_(open_data_dir(ctx.config, topology)),
      acceptors_(acceptor_config(ctx.config, topology), data_dir_.get(), load_state(data_dir_.get(), state_note_, ctx.config.join),
                 Clock::now(), random_nonce()),
      proposer_(topology, ctx.config.node, proposer_config(ctx)) {
  if (data_dir_) data_dir_->set_fault([&ctx] { return ctx.faults ? ctx.faults->disk_error() : std::string(); });
}

void QuorumHost::log_start() {
  if (state_note_.starts_with("+state-corrupt"))
    log::error("{}", state_note_);
  else if (!state_note_.empty())
    log::info("{}", state_note_);
  log_events();
}

void QuorumHost::cas(const std::string& key, QuorumProposer::Change change, CasDone done, CasMode mode) {
  auto op = proposer_.cas(key, std::move(change), Clock::now(), out_, mode);
  waits_[op] = std::move(done);
  QOut out;
  std::swap(out, out_);
  send(out);
}

void QuorumHost::send(const QOut& out) {
  for (const auto& s : out.sends) {
    MsgType type = type_of(s.msg);
    std::visit(
        [&](const auto& msg) {
          using M = std::decay_t<decltype(msg)>;
          auto deliver_self = [this, type, msg] {
            // Our own acceptor answers through the loop, never re-entrantly.
            boost::asio::post(ctx_.io, [this, type, msg] {
              on_message(type, ctx_.self, encode(Envelope<M>{ctx_.self, msg}), Clock::now());
            });
          };
          if (s.to.empty()) {
            deliver_self();
            for (const auto& id : topology_.members())
              if (id != ctx_.config.node && membership_.is_alive(id)) links_.send(id, type, msg);
          } else if (s.to == ctx_.config.node) {
            deliver_self();
          } else {
            links_.send(s.to, type, msg);
          }
        },
        s.msg);
  }
  // A refusal for a newer configuration is counted, and the operation
  // ended stale_config; the node asks the refuser for its configuration.
  ctx_.counters.stale_config_refusals += out.stale.size();
  for (const auto& st : out.stale)
    if (stale_fn_) stale_fn_(st.from);
  QOut more;
  for (const auto& r : out.results) {
    auto it = waits_.find(r.op);
    if (it == waits_.end()) {
      change_result(r, more);
      continue;
    }
    auto fn = std::move(it->second);
    waits_.erase(it);
    fn(r);
  }
  if (!more.sends.empty() || !more.results.empty()) send(more);
}

void QuorumHost::adopt(Time now, bool settled) {
  acceptors_.adopted(topology_, settled);
  log_events();
  if (topology_.version() > proposer_.topology().version()) {
    proposer_.adopt(topology_, now, out_);
    if (member_change_) member_change_->adopted(topology_.version(), proposer_, now, out_);
  }
  change_progress();
  QOut out;
  std::swap(out, out_);
  send(out);
}

void QuorumHost::change_members(const NodeId& id, bool add, std::vector<std::string> keys,
                                std::function<void(const std::string&)> done) {
  if (member_change_) return done("a member change is already running on this node");
  member_change_ = std::make_unique<MemberChange>(id, add, std::move(keys));
  member_change_done_ = std::move(done);
  member_change_->start(proposer_, Clock::now(), out_);
  change_progress();
  QOut out;
  std::swap(out, out_);
  send(out);
}

// A result of an operation the member change asked for.
void QuorumHost::change_result(const CasResult& r, QOut& out) {
  if (!member_change_) return;
  member_change_->on_result(r, proposer_, Clock::now(), out);
  // Our own operation committed a configuration: adopt it (the commit
  // pushed to us may be lost; our own result is not).
  if (auto rec = member_change_->take_adopt(); rec && config_fn_) config_fn_(*rec);
  change_progress();
}

void QuorumHost::change_progress() {
  if (!member_change_) return;
  auto stage = member_change_->stage();
  if (stage != MemberChange::Stage::done && stage != MemberChange::Stage::failed) return;
  std::string why = stage == MemberChange::Stage::failed ? member_change_->why() : std::string();
  auto done = std::move(member_change_done_);
  member_change_.reset();
  if (done) done(why);
}

void QuorumHost::on_message(MsgType type, const Sender& from, std::string_view body, Time now) {
  auto bad = [&] { ++ctx_.counters.decode_errors; };
  switch (type) {
    case MsgType::q_prepare:
    case MsgType::q_accept:
    case MsgType::q_recover_request:
    case MsgType::q_recover_state:
      on_acceptor_message(type, from, body, now);
      log_events();
      break;
    case MsgType::q_promise: {
      Envelope<QPromise> e;
      if (!decode(body, e)) return bad();
      proposer_.on_promise(from.node, e.msg, now, out_);
      break;
    }
    case MsgType::q_accepted: {
      Envelope<QAccepted> e;
      if (!decode(body, e)) return bad();
      proposer_.on_accepted(from.node, e.msg, now, out_);
      break;
    }
    case MsgType::q_commit: {
      Envelope<QCommit> e;
      if (!decode(body, e)) return bad();
      if (copy_.apply(e.msg)) {
        for (const auto& fn : change_fns_) fn(e.msg);
        if (e.msg.key == kMembersKey && config_fn_)
          if (auto rec = config_from_register(e.msg.value)) config_fn_(*rec);
      }
      return;
    }
    default:
      return;
  }
  QOut out;
  std::swap(out, out_);
  send(out);
}

// The acceptor's messages. AcceptorHost answers nothing while it recovers
// or cannot make a change durable (the proposers' resends and timeouts
// cover the silence); our own proposer gets its answers directly.
void QuorumHost::on_acceptor_message(MsgType type, const Sender& from, std::string_view body, Time now) {
  auto bad = [&] { ++ctx_.counters.decode_errors; };
  const bool self = from.node == ctx_.config.node;
  switch (type) {
    case MsgType::q_prepare: {
      Envelope<QPrepare> e;
      if (!decode(body, e)) return bad();
      auto reply = acceptors_.on_prepare(e.msg, now);
      if (!reply) return;
      if (self) return proposer_.on_promise(from.node, *reply, now, out_);
      return links_.send(from.node, MsgType::q_promise, *reply);
    }
    case MsgType::q_accept: {
      Envelope<QAccept> e;
      if (!decode(body, e)) return bad();
      auto reply = acceptors_.on_accept(e.msg, now);
      if (!reply) return;
      if (self) return proposer_.on_accepted(from.node, *reply, now, out_);
      return links_.send(from.node, MsgType::q_accepted, *reply);
    }
    case MsgType::q_recover_request: {
      Envelope<QRecoverRequest> e;
      if (!decode(body, e)) return bad();
      if (auto answer = acceptors_.on_recover_request(from.node, e.msg, now))
        links_.send(from.node, MsgType::q_recover_state, *answer);
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

void QuorumHost::tick(Time now) {
  acceptors_.tick(now);
  for (const auto& id : acceptors_.requests_due(now))
    if (membership_.is_alive(id)) links_.send(id, MsgType::q_recover_request, acceptors_.request());
  for (const auto& [id, answer] : acceptors_.answers_due()) links_.send(id, MsgType::q_recover_state, answer);
  log_events();
  proposer_.tick(now, out_);
  if (member_change_) {
    member_change_->tick(proposer_, now, out_);
    change_progress();  // a tick may end it (a stale wait that ran out)
  }
  if (out_.sends.empty() && out_.results.empty()) return;
  QOut out;
  std::swap(out, out_);
  send(out);
}

// A late copy: a write-back's lease hint was for then, not now.
void QuorumHost::push_commits(const NodeId& peer) {
  for (auto [key, c] : copy_.all()) {
    c.lease_left_ms = -1;
    links_.send(peer, MsgType::q_commit, c);
  }
}

bool QuorumHost::save_note(const std::string& name, const std::string& value) {
  bool ok = acceptors_.set_note(name, value);
  log_events();
  return ok;
}

void QuorumHost::log_events() {
  for (const auto& e : acceptors_.take_events()) {
    if (e.starts_with("+disk-fault"))
      log::error("{}", e);
    else
      log::info("{}", e);
  }
}

}  // namespace rg::grid
