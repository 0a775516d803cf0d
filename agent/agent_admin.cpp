// AgentNode: the admin commands of the agent, and what every answer carries.
#include <fmt/format.h>

#include "agent/agent_node.h"

namespace rg::agent {

using nlohmann::json;

namespace {
json entry_json(const grid::Store& store, const NodeId& id) {
  const auto* r = store.find("nodes");
  if (!r) return nullptr;
  auto v = r->get(id);
  if (!v) return nullptr;
  json j = json::parse(v->value, nullptr, false);
  return j.is_discarded() ? json(nullptr) : j;
}
}  // namespace

json AgentNode::roles_json() const {
  auto now = Clock::now();
  json j;
  const auto& t = agent_.table();
  if (t && t->master) {
    const auto& m = *t->master;
    json mj{{"node", m.node}, {"epoch", m.epoch}, {"phase", to_string(m.phase)}, {"lease_ms", m.lease_ms},
            {"renewal", m.renewal}};
    if (m.node == node_.config().node && agent_.acting_master(now))
      mj["lease_remaining_ms"] = to_ms(agent_.lease_bound() - now);
    auto e = entry_json(node_.store(), m.node);
    if (!e.is_null()) {
      mj["listen"] = e.value("listen", "");
      mj["admin"] = e.value("admin", "");
    }
    j["master"] = mj;
  } else {
    j["master"] = nullptr;
  }
  j["replica"] = (t && t->replica) ? json{{"node", t->replica->node}, {"epoch", t->replica->epoch}} : json(nullptr);
  j["epoch"] = t ? t->epoch : 0;
  j["maintenance"] = t ? t->maintenance : false;
  j["reason"] = t ? t->reason : "";
  j["self"] = {{"node", node_.config().node},
               {"role", to_string(agent_.role())},
               {"state", to_string(agent_.state())},
               {"acting_master", agent_.acting_master(now)},
               {"epoch_seen", agent_.epoch_seen()}};
  if (watchdog_)
    j["self"]["watchdog"] = {{"mode", to_string(watchdog_->mode())}, {"armed", watchdog_->armed()},
                             {"timeout_ms", to_ms(watchdog_->timeout())}, {"keepalives", watchdog_->keepalives()}};
  json nodes = json::array();
  for (const auto& id : node_.membership().topology().members()) {
    json n{{"id", id}};
    bool self = id == node_.config().node;
    n["alive"] = self || node_.membership().is_alive(id);
    auto e = entry_json(node_.store(), id);
    n["role"] = e.is_null() ? "unknown" : e.value("role", "unknown");
    n["state"] = e.is_null() ? "" : e.value("state", "");
    n["hook"] = e.is_null() ? json(nullptr) : e.value("hook", json(nullptr));
    if (self) {
      n["role"] = to_string(agent_.role());
      n["state"] = to_string(agent_.state());
    }
    nodes.push_back(n);
  }
  j["nodes"] = nodes;
  json steps = json::array();
  for (const auto& s : agent_.last_failover())
    steps.push_back({{"step", s.step}, {"took_ms", to_ms(s.end - s.start)}, {"outcome", s.outcome}});
  j["last_failover"] = steps;
  return j;
}

// Rides on every admin answer, puts included: rebuilt only when what it
// shows changed (the epoch, the master or replica, or the master's entry in
// "nodes"), not parsed and printed again for every write.
std::string AgentNode::context_json() const {
  const auto& t = agent_.table();
  ContextKey key;
  if (t) {
    key = ContextKey{t->epoch, t->master ? t->master->node : "", t->replica ? t->replica->node : "", 0};
    const auto* nodes = t->master ? node_.store().find("nodes") : nullptr;
    if (auto v = nodes ? nodes->get(t->master->node) : std::nullopt) key.master_entry = v->version;
  }
  if (context_ && context_->first == key) return context_->second;
  json j{{"epoch", key.epoch}};
  if (t && t->master) {
    j["master"] = t->master->node;
    auto e = entry_json(node_.store(), t->master->node);
    if (!e.is_null()) j["master_admin"] = e.value("admin", "");
  } else {
    j["master"] = nullptr;
  }
  j["replica"] = (t && t->replica) ? json(t->replica->node) : json(nullptr);
  context_.emplace(key, j.dump());
  return context_->second;
}

void AgentNode::register_admin() {
  auto& a = node_.admin();
  a.handle("roles", [this](const grid::AdminRequest&, grid::Reply r) { r.ok(roles_json().dump()); });
  a.handle("master", [this](const grid::AdminRequest&, grid::Reply r) {
    auto j = roles_json();
    if (j["master"].is_null()) return r.error("no master right now (the role is vacant)");
    r.ok(j["master"].dump());
  });
  a.handle("switchover", [this](const grid::AdminRequest& q, grid::Reply r) {
    if (q.args.size() != 1) return r.error("usage: switchover --to NODE");
    std::string why;
    bool planted = node_.faults() && node_.faults()->early_handover();
    feed([&](HaAgent& ag, Time now, AgentOutput& out) { why = ag.switchover(q.args[0], now, out, planted); });
    if (!why.empty()) return r.error(why);
    record("switchover-requested", {{"to", q.args[0]}});
    r.ok(json{{"switchover", q.args[0]}}.dump());
  });
  a.handle("maintenance", [this](const grid::AdminRequest& q, grid::Reply r) {
    if (q.args.size() != 1 || (q.args[0] != "on" && q.args[0] != "off"))
      return r.error("usage: maintenance on|off");
    std::string why;
    bool on = q.args[0] == "on";
    feed([&](HaAgent& ag, Time now, AgentOutput& out) { why = ag.set_maintenance(on, now, out); });
    if (!why.empty()) return r.error(why);
    record("maintenance-requested", {{"on", on}});
    r.ok(json{{"maintenance", on}}.dump());
  });
  // Member changes (issue 14): one member added or removed through the
  // register; the answer comes once the change is settled. The master is
  // never removed (a switchover first); the change itself cannot check it
  // (the role table is another register), so the agent does.
  a.handle("member", [this](const grid::AdminRequest& q, grid::Reply r) {
    if (q.args.size() != 2 || (q.args[0] != "add" && q.args[0] != "remove"))
      return r.error("usage: member add|remove NODE");
    const bool add = q.args[0] == "add";
    const NodeId id = q.args[1];
    const auto& t = agent_.table();
    if (!add && t && t->master && t->master->node == id)
      return r.error(fmt::format("{} is the master: hand the role over first (rolegridctl switchover --to NODE)", id));
    record("member-change-requested", {{"add", add}, {"node", id}});
    node_.change_members(id, add, [this, r, add, id](const std::string& why) {
      if (!why.empty()) return r.error(fmt::format("member {} {}: {}", add ? "add" : "remove", id, why));
      const auto& topo = node_.topology();
      r.ok(json{{"ok", true}, {"version", topo.version()}, {"members", topo.members()}}.dump());
    });
  });
  // Grid writes with "if-epoch N": the same check as `fence`.
  node_.set_epoch_guard([this](std::uint64_t epoch) -> std::string {
    auto why = not_fenced_reason(health_view(), epoch);
    return why.empty() ? why : fmt::format("if-epoch {}: refused, {}", epoch, why);
  });
  // The fencing-token check: yes only while this node acts as master at
  // exactly that epoch. Answered from this node's own state, at once.
  a.handle("fence", [this](const grid::AdminRequest& q, grid::Reply r) {
    auto epoch = q.args.size() == 1 ? parse_epoch(q.args[0]) : std::nullopt;
    if (!epoch) return r.error("usage: fence EPOCH (a positive integer)");
    auto v = health_view();
    if (auto why = not_fenced_reason(v, *epoch); !why.empty()) return r.error(why);
    r.ok(json::parse(health_json(v)).dump());
  });
  a.handle("events", [this](const grid::AdminRequest& q, grid::Reply r) {
    bool follow = !q.args.empty() && q.args[0] == "follow";
    if (follow) {
      for (const auto& e : events_) r.more(e.dump());
      followers_.push_back(r);
      return;
    }
    json arr = json::array();
    for (const auto& e : events_) arr.push_back(e);
    r.ok(arr.dump());
  });
}

}  // namespace rg::agent
