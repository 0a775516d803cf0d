// rolegridctl: inspect and use a live rolegrid node through its admin port.
// Every read command prints text for people, or the node's JSON with --json.
#include <cstdlib>
#include <iostream>
#include <optional>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "grid/node_config.h"
#include "programs/admin_client.h"
#include "programs/top_view.h"

using nlohmann::json;
namespace rt = rg::tools;

namespace {

std::string env_or(const char* name, std::string fallback) {
  const char* v = std::getenv(name);
  return v && *v ? v : fallback;
}

std::string bar(double percent) {
  int filled = static_cast<int>(percent / 5.0);
  return "[" + std::string(filled, '#') + std::string(20 - filled, '.') + "]";
}

void print_status(const json& s) {
  fmt::print("node        {} (incarnation {})\n", s["node"].get<std::string>(), s["incarnation"].get<std::uint64_t>());
  fmt::print("cluster     {}  mode {}{}\n", s["cluster"].get<std::string>(), s["mode"].get<std::string>(),
             s.contains("multicast") ? " " + s["multicast"].get<std::string>() : "");
  fmt::print("listen      {}  admin {}\n", s["listen"].get<std::string>(), s["admin"].get<std::string>());
  fmt::print("uptime      {:.1f} s\n", s["uptime_ms"].get<double>() / 1000.0);
  fmt::print("alive peers {}\n", s["alive"].dump());
  fmt::print("rcvbuf      {} B granted\n", s["rcvbuf_granted"].get<std::uint64_t>());
  if (s["tilt"].get<bool>()) fmt::print("TILT        on (this node stalled; not accusing others)\n");
  const auto& t = s["transfer"];
  if (t["copying"].get<bool>())
    fmt::print("transfer    {} {:5.1f}% from {} ({}/{} buckets, {} entries, {} ms)\n", bar(t["percent"].get<double>()),
               t["percent"].get<double>(), t["donor"].get<std::string>(), t["buckets_done"].get<std::uint64_t>(),
               t["buckets_total"].get<std::uint64_t>(), t["entries"].get<std::uint64_t>(),
               t["elapsed_ms"].get<std::int64_t>());
  else if (t["synced"].get<bool>())
    fmt::print("transfer    synced{} ({} entries in {} ms)\n",
               t["donor"].get<std::string>().empty() ? "" : " from " + t["donor"].get<std::string>(),
               t["entries"].get<std::uint64_t>(), t["elapsed_ms"].get<std::int64_t>());
  else
    fmt::print("transfer    waiting for a member with data\n");
  const auto& st = s["stream"];
  fmt::print("stream      next seq {}  completed {}  queued {}  in flight {} B  pending {}\n",
             st["next_seq"].get<std::uint64_t>(), st["completed"].get<std::uint64_t>(),
             st["queued"].get<std::uint64_t>(), st["in_flight_bytes"].get<std::uint64_t>(),
             st["pending_writes"].get<std::uint64_t>());
  fmt::print("counters\n");
  for (const auto& [k, v] : s["counters"].items()) fmt::print("  {:<22} {}\n", k, v.dump());
}

void print_members(const json& arr) {
  fmt::print("{:<12} {:<10} {:<18} {:<22} {}\n", "ID", "STATE", "INCARNATION", "ADDRESS", "LAST HEARD");
  for (const auto& m : arr) {
    auto ago = m["last_heard_ms"].get<std::int64_t>();
    std::string heard = m["self"].get<bool>() ? "(self)" : ago < 0 ? "never" : fmt::format("{} ms ago", ago);
    fmt::print("{:<12} {:<10} {:<18} {:<22} {}\n", m["id"].get<std::string>(), m["state"].get<std::string>(),
               m["incarnation"].get<std::uint64_t>(), m["address"].get<std::string>(), heard);
  }
}

void print_value(const json& v) {
  if (v.is_object())
    for (const auto& [k, fv] : v.items()) fmt::print("{}={}\n", k, fv.get<std::string>());
  else
    fmt::print("{}\n", v.get<std::string>());
}

void print_roles(const json& j) {
  if (j["master"].is_null()) fmt::print("master      (vacant)\n");
  else {
    const auto& m = j["master"];
    fmt::print("master      {} epoch {} {}{}\n", m["node"].get<std::string>(), m["epoch"].get<std::uint64_t>(),
               m["phase"].get<std::string>(),
               m.contains("lease_remaining_ms") ? fmt::format(" (lease {} ms left)", m["lease_remaining_ms"].get<std::int64_t>())
                                                : fmt::format(" (lease {} ms)", m["lease_ms"].get<std::int64_t>()));
  }
  fmt::print("replica     {}\n", j["replica"].is_null() ? "(none)" : j["replica"]["node"].get<std::string>());
  fmt::print("epoch       {}{}\n", j["epoch"].get<std::uint64_t>(), j["maintenance"].get<bool>() ? "  MAINTENANCE (no automatic failover)" : "");
  if (!j["reason"].get<std::string>().empty()) fmt::print("last change {}\n", j["reason"].get<std::string>());
  fmt::print("\n{:<12} {:<6} {:<9} {:<14} {}\n", "NODE", "ALIVE", "ROLE", "STATE", "LAST HOOK");
  for (const auto& n : j["nodes"]) {
    std::string hook = "-";
    if (n["hook"].is_object())
      hook = fmt::format("{} exit {} at {}", n["hook"]["name"].get<std::string>(), n["hook"]["status"].get<int>(),
                         n["hook"]["at"].get<std::string>());
    // A dead node's entry still holds the role it last reported; showing that
    // as its role would put a second "master" in the table after a failover.
    bool alive = n["alive"].get<bool>();
    auto role = n["role"].get<std::string>();
    fmt::print("{:<12} {:<6} {:<9} {:<14} {}\n", n["id"].get<std::string>(), alive ? "yes" : "no",
               alive ? role : "down", alive ? n["state"].get<std::string>() : "was " + role, hook);
  }
  if (!j["last_failover"].empty()) {
    fmt::print("\nlast failover:");
    for (const auto& s : j["last_failover"])
      fmt::print(" {} {} ms ({})", s["step"].get<std::string>(), s["took_ms"].get<std::int64_t>(), s["outcome"].get<std::string>());
    fmt::print("\n");
  }
}

void print_event(const json& e, bool as_json) {
  if (as_json) {
    std::cout << e.dump() << std::endl;
    return;
  }
  std::string extra;
  for (const auto& k : {"from", "to", "reason", "hook", "status", "step", "took_ms", "outcome", "text", "master"})
    if (e.contains(k)) extra += fmt::format(" {}={}", k, e[k].is_string() ? e[k].get<std::string>() : e[k].dump());
  fmt::print("{} {:<6} {:<20} role={} epoch={}{}\n", e.value("wall", "?"), e.value("node", "?"),
             e.value("event", "?"), e.value("role", "?"), e.value("epoch", 0), extra);
}

// What the command line asked for.
struct Cli {
  std::string node = env_or("ROLEGRID_NODE", "");
  std::string secret_file = env_or("ROLEGRID_SECRET_FILE", "");
  std::string cluster = env_or("ROLEGRID_CLUSTER", "rolegrid");
  bool as_json = false;
  int timeout_ms = 5000;
  bool timeout_given = false;
  std::string cmd;
  std::vector<std::string> args;
  int watch_count = 0;
  std::size_t key_limit = 1000;
  std::string switch_to;
  std::string if_epoch;  // passed on as given: the node checks it
  std::vector<std::string> fault_args;
  bool follow = false;
  std::string top_interval = "1s";
  int top_iterations = 0;
};

void define_options(CLI::App& app, Cli& c) {
  app.require_subcommand(1);
  app.add_option("--node", c.node, "admin HOST:PORT of any node (env ROLEGRID_NODE)");
  app.add_option("--secret-file", c.secret_file, "the cluster secret file (env ROLEGRID_SECRET_FILE)");
  app.add_option("--cluster", c.cluster, "cluster name (env ROLEGRID_CLUSTER)")->capture_default_str();
  app.add_flag("--json", c.as_json, "print the node's JSON answer (read commands)");
  app.add_option("--timeout", c.timeout_ms, "milliseconds to wait for an answer")->capture_default_str();
}

// One subcommand; its positional arguments, in order, land in c.args.
CLI::App* add_command(CLI::App& app, Cli& c, const char* name, const char* help,
                      std::vector<const char*> positional) {
  auto* s = app.add_subcommand(name, help);
  for (const auto* p : positional) {
    std::string pn = p;
    bool optional = pn.front() == '[';
    auto* o = s->add_option(pn, [&c](const CLI::results_t& r) {
      c.args.insert(c.args.end(), r.begin(), r.end());
      return true;
    }, pn);
    if (!optional) o->required();
  }
  // --json works before the command and after it.
  s->add_flag("--json", c.as_json, "print the node's JSON answer");
  s->callback([&c, name] { c.cmd = name; });
  return s;
}

void define_data_commands(CLI::App& app, Cli& c) {
  add_command(app, c, "status", "this node's state, counters and any state transfer in progress", {});
  add_command(app, c, "members", "each member's state, incarnation, address and when it was last heard", {});
  add_command(app, c, "regions", "the regions and their sizes", {});
  add_command(app, c, "get", "read a key (local copy)", {"REGION", "KEY"});
  auto* ks = add_command(app, c, "keys", "list keys of a region", {"REGION", "[PREFIX]"});
  ks->add_option("--limit", c.key_limit, "at most this many keys")->capture_default_str();
  const char* if_epoch_help = "refused unless the node acts as master at exactly this epoch (a fencing token)";
  add_command(app, c, "put", "write a value, returns once every member applied it", {"REGION", "KEY", "VALUE"})
      ->add_option("--if-epoch", c.if_epoch, if_epoch_help);
  add_command(app, c, "put-field", "write one field of a map value (only the field travels)",
              {"REGION", "KEY", "FIELD", "VALUE"})
      ->add_option("--if-epoch", c.if_epoch, if_epoch_help);
  add_command(app, c, "del", "delete a key", {"REGION", "KEY"})->add_option("--if-epoch", c.if_epoch, if_epoch_help);
  auto* w = add_command(app, c, "watch", "print every change to a region (or a key prefix) until interrupted",
                        {"REGION", "[PREFIX]"});
  w->add_option("--count", c.watch_count, "stop after this many changes");
}

void define_role_commands(CLI::App& app, Cli& c) {
  add_command(app, c, "roles", "master, replica, epoch, phase, lease, and each node's role and last hook", {});
  add_command(app, c, "master", "the current master's id and addresses (ask any node)", {});
  auto* so = add_command(app, c, "switchover", "hand the master role to NODE gracefully (asks the master)", {});
  so->add_option("--to", c.switch_to, "the node to become master")->required();
  add_command(app, c, "maintenance", "on: no automatic failover; off: back to normal", {"on|off"});
  add_command(app, c, "member", "add or remove one member while the cluster runs; returns once the change is "
              "settled (README, \"Changing the members\")", {"add|remove", "NODE"});
  add_command(app, c, "fence", "exit 0 only if this node acts as master at exactly EPOCH (the fencing "
              "token), else print why and exit 1", {"EPOCH"});
  auto* fa = app.add_subcommand("fault", "tests only: drop PEER PERCENT [in|out|both] | delay PEER MS | "
                                "drop-app CHANNEL [in|out] | clear | show (node needs --enable-fault-injection)");
  fa->add_option("rule", c.fault_args, "the rule")->required()->expected(-1);
  fa->callback([&c] { c.cmd = "fault"; });
  auto* ev = add_command(app, c, "events", "role changes, hook runs and failover steps of this node", {});
  ev->add_flag("--follow", c.follow, "keep printing new events until interrupted");
  auto* tp = add_command(app, c, "top", "a refreshing table of every member: state, role, epoch, lease, writes/s, "
                         "replication lag (asks each member; one that does not answer shows as unreachable)", {});
  tp->add_option("--interval", c.top_interval, "time between refreshes, e.g. 500ms, 2s")->capture_default_str();
  tp->add_option("--iterations", c.top_iterations, "stop after this many refreshes; 0: until Ctrl-C")
      ->capture_default_str();
}

// Returns an exit code when the command line cannot be used, else nothing.
std::optional<int> parse(CLI::App& app, Cli& c, int argc, char** argv) {
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    auto rest = app.remaining();
    if (app.get_subcommands().empty() && !rest.empty() && rest.front().front() != '-')
      std::cerr << "rolegridctl: unknown command '" << rest.front() << "' (--help lists the commands)\n";
    else
      std::cerr << "rolegridctl: " << e.what() << " (--help lists the options)\n";
    return 2;
  }
  c.timeout_given = app.count("--timeout") > 0;
  // A member change may wait out a restarted member's lease a few times
  // before it settles (README, "Changing the members").
  if (c.cmd == "member" && !c.timeout_given) c.timeout_ms = 20000;
  if (c.node.empty()) {
    std::cerr << "rolegridctl: --node HOST:PORT is required (or set ROLEGRID_NODE)\n";
    return 2;
  }
  if (c.secret_file.empty()) {
    std::cerr << "rolegridctl: --secret-file is required (or set ROLEGRID_SECRET_FILE)\n";
    return 2;
  }
  return std::nullopt;
}

int top(const Cli& c) {
  auto interval = rg::grid::parse_duration(c.top_interval);
  if (!interval || *interval < std::chrono::milliseconds(100)) {
    std::cerr << "rolegridctl: --interval: '" << c.top_interval << "' is not a duration of at least 100ms\n";
    return 2;
  }
  if (c.top_iterations < 0) {
    std::cerr << "rolegridctl: --iterations: must be 0 (until Ctrl-C) or more\n";
    return 2;
  }
  rt::TopOptions o;
  o.node = c.node;
  o.cluster = c.cluster;
  o.interval = std::chrono::duration_cast<std::chrono::milliseconds>(*interval);
  o.iterations = c.top_iterations;
  o.json = c.as_json;
  // A refresh should not wait the one-shot commands' 5 s for a member that is gone.
  o.timeout = std::chrono::milliseconds(c.timeout_given ? c.timeout_ms : 1000);
  try {
    o.secret = rg::read_secret_file(c.secret_file);
  } catch (const std::exception& e) {
    std::cerr << "rolegridctl: " << e.what() << "\n";
    return 2;
  }
  return rt::run_top(o);
}

int watch(rt::AdminClient& client, const Cli& c) {
  client.send(c.cmd, c.args);
  client.flush();
  int seen = 0;
  for (;;) {
    auto r = client.read(std::chrono::hours(24));
    if (!r) continue;
    if (r->status == rg::grid::AdminStatus::error) {
      std::cerr << "rolegridctl: " << r->body << "\n";
      return 1;
    }
    auto j = json::parse(r->body);
    if (j.contains("watching")) continue;
    if (c.as_json) std::cout << r->body << std::endl;
    else if (j.contains("deleted")) fmt::print("{} {} deleted\n", j["region"].get<std::string>(), j["key"].get<std::string>());
    else fmt::print("{} {} = {}\n", j["region"].get<std::string>(), j["key"].get<std::string>(), j["value"].dump());
    std::fflush(stdout);
    if (c.watch_count > 0 && ++seen >= c.watch_count) return 0;
  }
}

[[noreturn]] void follow_events(rt::AdminClient& client, const Cli& c) {
  client.send(c.cmd, {"follow"});
  client.flush();
  for (;;) {
    auto r = client.read(std::chrono::hours(24));
    if (!r) continue;
    print_event(json::parse(r->body), c.as_json);
    std::fflush(stdout);
  }
}

// The arguments the node expects for c.cmd.
std::vector<std::string> request_args(const Cli& c) {
  if (c.cmd == "switchover") return {c.switch_to};
  if (c.cmd == "fault") return c.fault_args;
  auto args = c.args;
  if (!c.if_epoch.empty()) args.insert(args.end(), {"if-epoch", c.if_epoch});
  if (c.cmd == "keys") {
    if (args.size() == 1) args.push_back("");
    args.push_back(std::to_string(c.key_limit + 1));  // one more tells whether the list was cut
  }
  return args;
}

rg::grid::AdminResponse call(rt::AdminClient& client, const Cli& c, const std::vector<std::string>& args) {
  auto r = client.call(c.cmd, args);
  if (r.status != rg::grid::AdminStatus::error || c.cmd != "switchover" || r.context.empty()) return r;
  // Only the master hands its role over: ask it, wherever it is.
  auto ctx = json::parse(r.context, nullptr, false);
  if (!ctx.is_discarded() && ctx.contains("master_admin") && ctx["master_admin"].is_string() &&
      ctx["master_admin"].get<std::string>() != c.node) {
    rt::AdminClient master(ctx["master_admin"].get<std::string>(), c.cluster, rg::read_secret_file(c.secret_file),
                           std::chrono::milliseconds(c.timeout_ms));
    r = master.call(c.cmd, args);
  }
  return r;
}

void print_answer(const Cli& c, const json& j) {
  const auto& cmd = c.cmd;
  if (cmd == "status") print_status(j);
  else if (cmd == "members") print_members(j);
  else if (cmd == "regions") {
    fmt::print("{:<24} {}\n", "REGION", "ENTRIES");
    for (const auto& reg : j) fmt::print("{:<24} {}\n", reg["name"].get<std::string>(), reg["entries"].get<std::uint64_t>());
  } else if (cmd == "get") print_value(j["value"]);
  else if (cmd == "keys") {
    for (const auto& k : j) fmt::print("{}\n", k.get<std::string>());
  } else if (cmd == "roles") print_roles(j);
  else if (cmd == "master") {
    fmt::print("{} epoch {} {} listen {} admin {}\n", j["node"].get<std::string>(), j["epoch"].get<std::uint64_t>(),
               j["phase"].get<std::string>(), j.value("listen", "?"), j.value("admin", "?"));
  } else if (cmd == "events") {
    for (const auto& e : j) print_event(e, false);
  } else if (cmd == "fence") {
    fmt::print("fenced: {} acts as master at epoch {} ({} ms of lease left)\n", j.value("node", "?"),
               j.value("master_epoch", std::uint64_t{0}), j.value("lease_remaining_ms", std::int64_t{0}));
  } else if (cmd == "member") {
    fmt::print("members now (configuration version {}): {}\n", j.value("version", std::uint64_t{0}),
               fmt::join(j.value("members", std::vector<std::string>{}), ","));
  } else if (cmd == "switchover") {
    fmt::print("switchover to {} started; `rolegridctl master` shows when it is established\n", c.switch_to);
  } else fmt::print("ok\n");
}

int run(const Cli& c) {
  rt::AdminClient client(c.node, c.cluster, rg::read_secret_file(c.secret_file), std::chrono::milliseconds(c.timeout_ms));
  if (c.cmd == "watch") return watch(client, c);
  if (c.cmd == "events" && c.follow) follow_events(client, c);
  auto r = call(client, c, request_args(c));
  if (r.status == rg::grid::AdminStatus::error) {
    std::cerr << "rolegridctl: " << r.body << "\n";
    return 1;
  }
  auto j = json::parse(r.body);
  if (c.cmd == "keys" && j.size() > c.key_limit) {
    j.erase(j.size() - 1);
    std::cerr << "rolegridctl: more than " << c.key_limit << " keys; showing the first " << c.key_limit
              << " (--limit N)\n";
  }
  if (c.as_json) std::cout << j.dump(2) << "\n";
  else print_answer(c, j);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"rolegridctl: inspect and use a live rolegrid node"};
  Cli c;
  define_options(app, c);
  define_data_commands(app, c);
  define_role_commands(app, c);
  if (auto code = parse(app, c, argc, argv)) return *code;
  if (c.cmd == "top") return top(c);
  try {
    return run(c);
  } catch (const std::exception& e) {
    std::cerr << "rolegridctl: " << e.what() << "\n";
    return 2;
  }
}
