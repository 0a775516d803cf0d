// Node: the grid's admin commands (what rolegridctl talks to).
#include <optional>

#include <nlohmann/json.hpp>

#include <fmt/format.h>

#include "common/log.h"
#include "grid/node.h"

namespace rg::grid {

using nlohmann::json;

namespace {

json value_json(const Value& v) {
  if (v.kind == EntryKind::fields) {
    json f = json::object();
    for (const auto& fv : v.fields) f[fv.name] = fv.value;
    return f;
  }
  return v.value;
}

void need_args(const AdminRequest& r, std::size_t min, std::size_t max, const char* usage) {
  if (r.args.size() < min || r.args.size() > max)
    throw std::invalid_argument(fmt::format("usage: {}", usage));
}

// A write's arguments, then optionally "if-epoch" N. Returns N, if given.
std::optional<std::uint64_t> write_epoch(const AdminRequest& r, std::size_t n, const char* usage) {
  if (r.args.size() == n) return std::nullopt;
  auto e = r.args.size() == n + 2 && r.args[n] == "if-epoch" ? parse_epoch(r.args[n + 1]) : std::nullopt;
  if (!e) throw std::invalid_argument(fmt::format("usage: {} [if-epoch N]", usage));
  return e;
}

}  // namespace

// Over 80 lines on purpose: one flat list of the fields `status` answers;
// splitting it would only scatter that list.
std::string Node::status_json() const {
  auto now = Clock::now();
  json j;
  j["node"] = config_.node;
  j["incarnation"] = incarnation_;
  j["cluster"] = config_.cluster;
  j["listen"] = config_.listen.str();
  j["admin"] = config_.admin.str();
  j["mode"] = config_.multicast ? "multicast" : "unicast";
  if (config_.multicast) j["multicast"] = config_.multicast->str();
  j["rcvbuf_granted"] = rcvbuf_granted_;
  j["uptime_ms"] = to_ms(now - started_);
  j["members"] = topology_.members();
  j["alive"] = membership_.alive();
  j["tilt"] = membership_.tilted();
  const auto& acceptors = quorum_.acceptors();
  j["quorum_ready"] = acceptors.ready();
  j["acceptor"] = {{"voting", acceptors.voting()},
                   {"state", acceptors.progress(now)},
                   {"data_dir", quorum_.data_dir() ? json(quorum_.data_dir()->path()) : json(nullptr)},
                   {"disk_error", acceptors.disk_error()}};
  j["tilt_count"] = membership_.tilt_count();
  const auto& t = sync_.transfer();
  json tj;
  tj["synced"] = t.synced;
  tj["copying"] = t.copying;
  tj["donor"] = t.donor;
  tj["buckets_done"] = t.buckets_done;
  tj["buckets_total"] = t.buckets_total;
  tj["entries"] = t.entries;
  tj["percent"] = t.buckets_total ? 100.0 * static_cast<double>(t.buckets_done) / static_cast<double>(t.buckets_total)
                                  : (t.synced ? 100.0 : 0.0);
  tj["elapsed_ms"] = to_ms((t.synced ? t.finished : now) - t.started);
  j["transfer"] = tj;
  json s;
  const auto& sender = writes_.sender();
  s["next_seq"] = sender.next_seq();
  s["completed"] = sender.completed();
  s["queued"] = sender.queued();
  s["in_flight_bytes"] = sender.in_flight_bytes();
  s["pending_writes"] = writes_.pending();
  s["held_writes"] = writes_.held();  // waiting until this node knows its index (WritePath::confirm_origin)
  json acks = json::object();
  for (const auto& [id, next] : sender.acks()) acks[id] = next;
  s["acks"] = acks;
  j["stream"] = s;
  const auto& c = counters_;
  const auto& cc = conn_counters_;
  j["counters"] = {
      {"datagrams_in", c.datagrams_in},
      {"datagrams_out", c.datagrams_out},
      {"datagrams_dropped", c.datagrams_dropped},
      {"frames_in", cc.frames_in},
      {"writes_out", cc.frames_out},
      {"bytes_in", cc.bytes_in},
      {"bytes_out", cc.bytes_out},
      {"bad_frames", cc.bad_frames},
      {"unauthenticated", c.unauthenticated + cc.unauthenticated},
      {"replayed", c.replayed + cc.replayed},
      {"unverified", c.unverified},
      {"challenges_sent", c.challenges_sent},
      {"challenges_answered", c.challenges_answered},
      {"handshake_timeouts", cc.handshake_timeouts},
      {"refused_connections", cc.refused_connections},
      {"handshakes_evicted", cc.handshakes_evicted},
      {"connects_restarted", cc.connects_restarted},
      {"stalled_links_replaced", cc.stalled_links_replaced},
      {"sessions", sessions_.size()},
      {"decode_errors", c.decode_errors},
      {"send_errors", c.send_errors},
      {"writes_local", c.writes_local},
      {"writes_applied", c.writes_applied},
      {"retransmits", sender.retransmits()},
      {"naks_sent", c.naks_sent},
      {"naks_received", c.naks_received},
      {"resets", c.resets},
      {"refusals_sent", c.refusals_sent},
      {"refused_messages", c.refused_messages},
      {"probes", c.probes},
      {"anti_entropy_rounds", c.anti_entropy_rounds},
      {"entries_reconciled", c.entries_reconciled},
      {"link_queue_drops", c.link_queue_drops},
      {"stale_config_refusals", c.stale_config_refusals},
  };
  if (faults_) j["faults"] = json::parse(faults_->describe());
  for (const auto& [name, fn] : status_fns_) j[name] = json::parse(fn());
  return j.dump();
}

std::string Node::members_json() const {
  auto now = Clock::now();
  json arr = json::array();
  json self;
  self["id"] = config_.node;
  self["state"] = "alive";
  self["self"] = true;
  self["incarnation"] = incarnation_;
  self["address"] = config_.listen.str();
  self["last_heard_ms"] = 0;
  arr.push_back(self);
  for (const auto& id : topology_.members()) {
    if (id == config_.node) continue;
    json m;
    m["id"] = id;
    m["self"] = false;
    const auto* info = membership_.find(id);
    m["state"] = info ? to_string(info->state) : "unknown";
    m["incarnation"] = info ? info->incarnation : 0;
    m["address"] = info ? info->address : "";
    m["last_heard_ms"] = info && info->state != MemberState::unknown ? to_ms(now - info->last_heard) : -1;
    m["synced"] = sync_.holds_full_copy(id);
    arr.push_back(m);
  }
  return arr.dump();
}

// Over 80 lines on purpose: the table of admin commands, one short handler
// each, kept in one place so the protocol's whole surface reads at a glance.
void Node::register_admin() {
  auto& a = *admin_;
  a.handle("status", [this](const AdminRequest&, Reply r) { r.ok(status_json()); });
  a.handle("members", [this](const AdminRequest&, Reply r) { r.ok(members_json()); });
  a.handle("regions", [this](const AdminRequest&, Reply r) {
    json arr = json::array();
    for (const auto& name : store_.region_names()) {
      const auto& reg = store_.region(name);
      arr.push_back({{"name", name}, {"entries", reg.size()}, {"with_tombstones", reg.entry_count()}});
    }
    r.ok(arr.dump());
  });
  a.handle("get", [this](const AdminRequest& q, Reply r) {
    need_args(q, 2, 2, "get REGION KEY");
    const Region* reg = store_.find(q.args[0]);
    auto v = reg ? reg->get(q.args[1]) : std::nullopt;
    if (!v) return r.error(fmt::format("no key '{}' in region '{}'", q.args[1], q.args[0]));
    json j{{"region", q.args[0]}, {"key", q.args[1]}, {"value", value_json(*v)}, {"version", v->version}};
    r.ok(j.dump());
  });
  a.handle("keys", [this](const AdminRequest& q, Reply r) {
    need_args(q, 1, 3, "keys REGION [PREFIX] [LIMIT]");
    const Region* reg = store_.find(q.args[0]);
    std::size_t limit = q.args.size() > 2 ? std::stoul(q.args[2]) : 1000;
    json arr = reg ? json(reg->keys(q.args.size() > 1 ? q.args[1] : "", limit)) : json::array();
    r.ok(arr.dump());
  });
  // The answer to a write, printed once per kind, not once per write.
  auto answer = [](const char* what) {
    return std::make_shared<const std::string>(json{{"ok", true}, {"op", what}}.dump());
  };
  auto done_fn = [](Reply r, std::shared_ptr<const std::string> body) {
    return [r, body = std::move(body)](bool ok, const std::string& err) {
      if (ok) r.ok(*body);
      else r.error(err);
    };
  };
  // A write with "if-epoch N" goes through only if the guard (the agent:
  // this node acts as master at exactly epoch N) lets it.
  auto epoch_refused = [this](const std::optional<std::uint64_t>& epoch) -> std::string {
    if (!epoch) return "";
    if (!epoch_guard_) return "if-epoch: this node has no agent to check the epoch";
    return epoch_guard_(*epoch);
  };
  a.handle("put", [this, done_fn, epoch_refused, body = answer("put")](const AdminRequest& q, Reply r) {
    if (auto why = epoch_refused(write_epoch(q, 3, "put REGION KEY VALUE")); !why.empty()) return r.error(why);
    put(q.args[0], q.args[1], q.args[2], done_fn(r, body));
  });
  a.handle("put-field", [this, done_fn, epoch_refused, body = answer("put-field")](const AdminRequest& q, Reply r) {
    if (auto why = epoch_refused(write_epoch(q, 4, "put-field REGION KEY FIELD VALUE")); !why.empty())
      return r.error(why);
    put_field(q.args[0], q.args[1], q.args[2], q.args[3], done_fn(r, body));
  });
  a.handle("del", [this, done_fn, epoch_refused, body = answer("del")](const AdminRequest& q, Reply r) {
    if (auto why = epoch_refused(write_epoch(q, 2, "del REGION KEY")); !why.empty()) return r.error(why);
    del(q.args[0], q.args[1], done_fn(r, body));
  });
  a.handle("fault", [this](const AdminRequest& q, Reply r) {
    if (!faults_) return r.error("fault injection is off (start the node with --enable-fault-injection)");
    if (q.args.size() == 1 && q.args[0] == "show") return r.ok(faults_->describe());
    auto why = faults_->apply(q.args);
    if (!why.empty()) return r.error(why);
    log::warn("+fault {}", fmt::join(q.args, " "));
    r.ok(faults_->describe());
  });
  a.handle("watch", [this](const AdminRequest& q, Reply r) {
    need_args(q, 1, 2, "watch REGION [PREFIX]");
    watches_.push_back(Watch{q.args[0], q.args.size() > 1 ? q.args[1] : "", r});
    r.more(json{{"watching", q.args[0]}, {"prefix", q.args.size() > 1 ? q.args[1] : ""}}.dump());
  });
  store_.on_change([this](const std::string& region, const std::string& key) {
    if (watches_.empty()) return;
    bool dead = false;
    for (const auto& w : watches_) {
      if (!w.reply.alive()) {
        dead = true;
        continue;
      }
      if (w.region != region || key.compare(0, w.prefix.size(), w.prefix) != 0) continue;
      const Region* reg = store_.find(region);
      auto v = reg ? reg->get(key) : std::nullopt;
      json j{{"region", region}, {"key", key}};
      if (v) j["value"] = value_json(*v);
      else j["deleted"] = true;
      w.reply.more(j.dump());
    }
    if (dead) std::erase_if(watches_, [](const Watch& w) { return !w.reply.alive(); });
  });
}

}  // namespace rg::grid
