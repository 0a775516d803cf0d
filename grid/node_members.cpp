// Node: member changes (issue 14; DESIGN.md, "Changing the members"). The
// node adopts a committed configuration newer than its own, from a commit
// of `cluster/members`, from the change it runs, or from a peer that tells
// it; its membership and quorum registers follow, and the layers above are
// told. Heartbeats carry the version: a node that hears a higher one asks
// that peer for its configuration, one that hears a lower one tells it.
#include <algorithm>
#include <array>
#include <utility>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "common/log.h"
#include "grid/envelope.h"
#include "grid/node.h"

namespace rg::grid {

void Node::adopt_config(const ConfigRecord& r) {
  Topology t = r.topology();
  const bool newer = t.version() > topology_.version();
  if (!newer && !(r.settled && t.version() == topology_.version())) return;
  auto now = Clock::now();
  // Removed is only a member that voted in the configuration it had: a node
  // still recovering (a joiner that heard a lagging peer first) waits.
  const bool voted_here = removed_ || (topology_.contains(config_.node) && quorum_.acceptors().ready());
  if (newer) {
    log::info("+config version {}: members {}", t.version(), fmt::join(t.members(), ","));
    topology_ = t;
    if (auto i = t.index_of(config_.node)) writes_.set_self_index(*i);
    membership_.adopt(t, now, mout_);
    drain_membership(now);
  }
  quorum_.adopt(now, r.settled);
  if (newer)
    for (const auto& fn : config_fns_) fn(topology_);
  if (topology_.contains(config_.node) || !voted_here) return;
  if (!std::exchange(removed_, true))
    log::warn("+removed: configuration version {} leaves this node out (members {}); it stops once the change "
              "is settled", t.version(), fmt::join(t.members(), ","));
  if (!r.settled || std::exchange(stopping_, true)) return;
  auto why = fmt::format("removed from the cluster's members at configuration version {}; to add this node again, "
                         "start it with an empty data dir after `rolegridctl member add {}`",
                         t.version(), config_.node);
  // Through the layers above (a master, there since the check, releases
  // its lease and runs its step-down hook), else at once.
  if (removed_fn_) removed_fn_(why);
  else if (fatal_) fatal_(why);
}

// What we use, as a record to tell: the committed one we hold, if it is
// that version (with its settled flag), else ours marked unsettled (a
// removal then does not forget on our word alone).
ConfigRecord Node::config_record() const {
  if (const auto* c = quorum_.value(kMembersKey))
    if (auto rec = config_from_register(c->value); rec && rec->version == topology_.version()) return *rec;
  return ConfigRecord::of(topology_, false);
}

// Local writes may be stamped once our index is the cluster's
// (WritePath::confirm_origin). It is known once we run a configuration past
// the first with us in it (only adopt_config sets one, and set our index
// from it); once our acceptor is ready (loaded intact, or recovered from
// ready members of the newest configuration their answers show) and we run
// at least the configuration it recovered; or, on the first list, once
// every live peer runs it too (first_list_confirmed).
void Node::confirm_origin_when_ready(Time now) {
  if (writes_.origin_known() || !topology_.contains(config_.node)) return;
  const auto& acceptors = quorum_.acceptors();
  if (topology_.version() > 1 || (acceptors.ready() && topology_.version() >= acceptors.topology().version()) ||
      first_list_confirmed(now))
    writes_.confirm_origin();
}

// A cluster that never changed its members (a first start, with a member
// not up yet, never bootstraps the acceptors): our place in --members is
// our index if every peer we hear, for a whole failure timeout, announces
// version 1 too. A member of a later configuration that we can reach is
// heard within that time and makes us ask for it instead. One peer alone
// is not enough: it may be another node without state on the same
// outdated list. Never for a joiner, whose list is not the first.
bool Node::first_list_confirmed(Time now) const {
  if (config_.join || topology_.version() != 1 || now - started_ < config_.failure_timeout) return false;
  bool heard = false;
  for (const auto& id : topology_.members()) {
    if (id == config_.node || !membership_.is_alive(id)) continue;
    auto it = peer_versions_.find(id);
    if (it == peer_versions_.end() || it->second != 1) return false;
    heard = true;
  }
  return heard;
}

void Node::compare_config(std::uint64_t their_version, const NodeId& who, const std::string& address, Time now) {
  peer_versions_[who] = their_version;
  if (their_version == topology_.version()) return;
  if (their_version > topology_.version()) {
    log::debug("{} is at configuration version {} (ours {}): asking it", who, their_version, topology_.version());
    return ask_config(address, now);
  }
  if (due(address, now)) send_udp(address, frame(MsgType::config_tell, ConfigTell{encode(config_record())}));
}

void Node::ask_config(const std::string& address, Time now) {
  if (due(address, now)) send_udp(address, frame(MsgType::config_ask, ConfigAsk{config_.listen.str()}));
}

// One ask or tell per address and heartbeat interval.
bool Node::due(const std::string& address, Time now) {
  if (address.empty()) return false;
  auto& last = config_sent_[address];
  if (now - last < config_.heartbeat_interval) return false;
  last = now;
  return true;
}

void Node::on_config_message(MsgType type, std::string_view body) {
  if (type == MsgType::config_ask) {
    Envelope<ConfigAsk> e;
    if (!decode(body, e) || !parse_endpoint(e.msg.reply_to)) return void(++counters_.decode_errors);
    return send_udp(e.msg.reply_to, frame(MsgType::config_tell, ConfigTell{encode(config_record())}));
  }
  Envelope<ConfigTell> e;
  ConfigRecord r;
  if (!decode(body, e) || !decode(e.msg.record, r)) return void(++counters_.decode_errors);
  try {
    r.topology();
  } catch (const std::invalid_argument&) {
    return void(++counters_.decode_errors);
  }
  adopt_config(r);
}

void Node::change_members(const NodeId& id, bool add, std::function<void(const std::string&)> done) {
  if (auto why = change_blocked(id, add); !why.empty()) return done(why);
  std::vector<std::string> keys(quorum_keys_.begin(), quorum_keys_.end());
  quorum_.change_members(id, add, std::move(keys), std::move(done));
}

// A change needs a majority of both configurations (MemberChange). With
// too few of either running it could only wait out the operator's deadline
// and leave a half-made change to guess about: it is refused at once with
// what to do. An added node does not count: it starts after the change.
std::string Node::change_blocked(const NodeId& id, bool add) const {
  const auto& now_members = topology_.members();
  // Not a change here (a repeated command, perhaps already done): the
  // change itself answers that.
  if (topology_.contains(id) == add) return {};
  std::vector<NodeId> next = now_members;
  if (add) next.push_back(id);
  else std::erase(next, id);
  auto runs = [&](const NodeId& m) { return m == config_.node || membership_.is_alive(m); };
  std::vector<NodeId> down;
  for (const auto& m : now_members)
    if (!runs(m)) down.push_back(m);
  for (const std::vector<NodeId>* c : std::array{&now_members, static_cast<const std::vector<NodeId>*>(&next)}) {
    auto live = static_cast<std::size_t>(std::count_if(c->begin(), c->end(), runs));
    auto need = quorum::majority(c->size());
    if (live >= need) continue;
    if (down.empty())  // only one member, and the added node starts after the change
      return fmt::format("a cluster of one member cannot grow: the change needs {} of the members {} running "
                         "and {} starts only once added", need, fmt::join(*c, ","), id);
    return fmt::format("the change needs {} of the members {} running and {} are: {} down{}; start it again or "
                       "remove it first", need, fmt::join(*c, ","), live, fmt::join(down, ","),
                       add ? fmt::format(" ({} counts only once added)", id) : "");
  }
  return {};
}

}  // namespace rg::grid
