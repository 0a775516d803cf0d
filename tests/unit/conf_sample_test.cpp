// programs/rolegrid.conf.sample, read by the node's real option parser: as
// shipped, and with every commented-out option line switched on. Meson passes
// the sample's path as RG_CONF_SAMPLE.
#include <doctest/doctest.h>

#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <iostream>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "programs/node_options.h"

#ifndef RG_CONF_SAMPLE
#error "RG_CONF_SAMPLE (the path of programs/rolegrid.conf.sample) comes from tests/meson.build"
#endif

using namespace rg;
using namespace std::chrono_literals;

namespace {

struct OptionLine {
  std::string key;
  std::string value;  // unquoted
  bool commented = false;
};

std::string read_file(const std::string& path) {
  std::ifstream in(path);
  REQUIRE_MESSAGE(in, "cannot read ", path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Every `key = value` line, commented out or not. Prose comments never take
// that shape in the sample, so this finds exactly its options.
std::vector<OptionLine> option_lines(const std::string& text) {
  static const std::regex line(R"(^(#\s*)?([a-z][a-z0-9-]*)\s*=\s*(.*?)\s*$)");
  std::vector<OptionLine> out;
  std::istringstream in(text);
  for (std::string l; std::getline(in, l);) {
    std::smatch m;
    if (!std::regex_match(l, m, line)) continue;
    std::string v = m[3];
    if (v.size() >= 2 && v.front() == '"' && v.back() == '"') v = v.substr(1, v.size() - 2);
    out.push_back({m[2], v, m[1].matched});
  }
  return out;
}

// The sample with its commented-out option lines switched on.
std::string uncommented(const std::string& text) {
  static const std::regex commented(R"(^#\s*([a-z][a-z0-9-]*\s*=))", std::regex::multiline);
  return std::regex_replace(text, commented, "$1");
}

struct TempFile {
  std::string path;
  explicit TempFile(const std::string& content) {
    char name[] = "/tmp/rgsampleXXXXXX";
    int fd = mkstemp(name);
    REQUIRE(fd >= 0);
    ::close(fd);
    path = name;
    std::ofstream(path) << content;
  }
  ~TempFile() { std::remove(path.c_str()); }
};

tools::NodeOptions parse(const std::vector<std::string>& args) {
  std::vector<const char*> argv{"rolegrid"};
  for (const auto& a : args) argv.push_back(a.c_str());
  return tools::parse_node_options(static_cast<int>(argv.size()), argv.data());
}

std::string error_of(const std::vector<std::string>& args) {
  try {
    parse(args);
  } catch (const std::invalid_argument& e) {
    return e.what();
  }
  return "";
}

std::set<std::string> node_option_names() {
  std::ostringstream help;
  auto* old = std::cout.rdbuf(help.rdbuf());
  try {
    parse({"--help"});
  } catch (...) {
    std::cout.rdbuf(old);
    throw;
  }
  std::cout.rdbuf(old);
  static const std::regex name(R"(--([a-z][a-z0-9-]+))");
  std::set<std::string> out;
  auto text = help.str();
  for (auto it = std::sregex_iterator(text.begin(), text.end(), name); it != std::sregex_iterator(); ++it)
    out.insert((*it)[1]);
  for (const auto* not_in_a_file : {"help", "version", "config"}) out.erase(not_in_a_file);
  return out;
}

}  // namespace

TEST_CASE("config sample: every line names a real option, once, with a value it accepts") {
  TempFile secret("QUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUE=\n");
  auto lines = option_lines(read_file(RG_CONF_SAMPLE));
  REQUIRE(lines.size() > 10);
  std::set<std::string> seen;
  for (const auto& l : lines) {
    CHECK_MESSAGE(seen.insert(l.key).second, "'", l.key, "' appears twice in the sample");
    // On the command line, unlike in a config file, CLI11 rejects an
    // unknown name: that is what catches a misspelt or removed option.
    // The sample's secret file does not exist here: that line gets one that does.
    bool secret_line = l.key == "secret-file" || l.key == "accept-secret-file";
    std::vector<std::string> args{"--config", RG_CONF_SAMPLE, "--" + l.key + "=" + (secret_line ? secret.path : l.value)};
    if (l.key != "secret-file") args.insert(args.end(), {"--secret-file", secret.path});
    auto err = error_of(args);
    CHECK_MESSAGE(err.empty(), "sample line '", l.key, " = ", l.value, "': ", err);
  }
}

TEST_CASE("config sample: every option of the node is in it") {
  std::set<std::string> in_sample;
  for (const auto& l : option_lines(read_file(RG_CONF_SAMPLE))) in_sample.insert(l.key);
  auto names = node_option_names();
  REQUIRE(names.count("failure-timeout") == 1);
  for (const auto& n : names) CHECK_MESSAGE(in_sample.count(n) == 1, "--", n, " is missing from the sample");
}

TEST_CASE("config sample: as shipped, and with every commented-out option switched on") {
  TempFile secret("QUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUE=\n");
  auto text = read_file(RG_CONF_SAMPLE);
  // Its secret-file names /etc/rolegrid/secret; the command line wins.
  auto shipped = parse({"--config", RG_CONF_SAMPLE, "--secret-file", secret.path});
  const auto& c = shipped.config;
  CHECK(c.node == "n1");
  CHECK(c.members == std::vector<NodeId>{"n1", "n2", "n3"});
  CHECK(c.listen.str() == "10.0.0.1:7401");
  CHECK(c.admin.str() == "127.0.0.1:7501");
  REQUIRE(c.multicast);
  CHECK(c.multicast->str() == "239.77.0.1:7400");
  CHECK(c.seeds.empty());
  CHECK(c.secrets == std::vector<std::string>{std::string(32, 'A')});
  CHECK(c.data_dir == "/var/lib/rolegrid");
  CHECK_FALSE(c.in_memory);
  CHECK(shipped.agent.hook_dir.empty());
  CHECK(shipped.agent.event_log.empty());

  TempFile all(uncommented(text));
  auto on = parse({"--config", all.path, "--secret-file", secret.path});
  const auto& u = on.config;
  const auto& a = on.agent;
  // Commented-out lines show the default: switching them on changes nothing.
  CHECK(u.cluster == c.cluster);
  CHECK(u.heartbeat_interval == c.heartbeat_interval);
  CHECK(u.failure_timeout == c.failure_timeout);
  CHECK(u.probe_timeout == c.probe_timeout);
  CHECK(u.anti_entropy_interval == c.anti_entropy_interval);
  CHECK(u.multicast_rcvbuf == c.multicast_rcvbuf);
  CHECK(u.log_level == c.log_level);
  CHECK(u.fault_injection == c.fault_injection);
  CHECK(u.in_memory == c.in_memory);
  CHECK(a.hook_timeout == shipped.agent.hook_timeout);
  CHECK(a.failover_timeout == shipped.agent.failover_timeout);
  CHECK(a.broadcast_timeout == shipped.agent.broadcast_timeout);
  CHECK(a.failover_backoff == shipped.agent.failover_backoff);
  CHECK(a.eviction_delay == shipped.agent.eviction_delay);
  CHECK(a.witness == shipped.agent.witness);
  // ... and those defaults are the ones the README documents.
  CHECK(u.cluster == "rolegrid");
  CHECK(u.heartbeat_interval == 100ms);
  CHECK(u.failure_timeout == 1000ms);
  CHECK(u.probe_timeout == 250ms);
  CHECK(u.anti_entropy_interval == 5s);
  CHECK(u.multicast_rcvbuf == 4194304);
  CHECK(u.log_level == "info");
  CHECK(a.hook_timeout == 10s);
  CHECK(a.failover_timeout == 5s);
  CHECK(a.broadcast_timeout == 500ms);
  CHECK(a.failover_backoff == 2s);
  CHECK(a.eviction_delay == 5s);
  CHECK_FALSE(a.witness);
  CHECK_FALSE(u.fault_injection);
  // Options without a default show an example.
  REQUIRE(u.seeds.size() == 2);
  CHECK(u.seeds[1].str() == "10.0.0.3:7401");
  CHECK(a.hook_dir == "/etc/rolegrid/hooks");
  CHECK(a.event_log == "/var/log/rolegrid/events.jsonl");
  CHECK(a.preferred_replicas == std::vector<NodeId>{"n2"});
}
