// HookRunner with real processes: a hook whose role is no longer current is
// dropped unrun, a superseded running hook is killed with its process group,
// and no hook inherits the node's descriptors.
#include <doctest/doctest.h>

#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>

#include "agent/hook_runner.h"

using namespace rg;
using namespace rg::agent;
namespace fs = std::filesystem;

namespace {

struct HookDir {
  fs::path dir;
  HookDir() {
    char tmpl[] = "/tmp/rg-hooks-XXXXXX";
    dir = ::mkdtemp(tmpl);
  }
  ~HookDir() { fs::remove_all(dir); }
  void write(const std::string& name, const std::string& body) {
    auto p = dir / name;
    std::ofstream(p) << "#!/bin/sh\n" << body << "\n";
    fs::permissions(p, fs::perms::owner_all);
  }
  std::string read(const std::string& name) const {
    std::ifstream f(dir / name);
    return std::string(std::istreambuf_iterator<char>(f), {});
  }
};

// Runs the loop until `done` or 10 s.
void run_until(boost::asio::io_context& io, const std::function<bool()>& done) {
  auto until = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (!done() && std::chrono::steady_clock::now() < until) {
    io.run_for(std::chrono::milliseconds(20));
    io.restart();
  }
}

}  // namespace

TEST_CASE("hooks: a hook whose role is no longer held when its turn comes is dropped unrun") {
  HookDir d;
  d.write("data", "sleep 0.3; echo data >> \"$0.log\"");
  d.write("master", "echo master >> \"$0.log\"");
  d.write("replica", "echo replica >> \"$0.log\"");
  boost::asio::io_context io;
  HookRunner runner(io, d.dir.string());
  std::vector<HookResult> results;
  bool master_current = true;
  runner.run({"data", {}, std::chrono::seconds(5), {}}, [&](const HookResult& r) { results.push_back(r); });
  HookRequest m{"master", {}, std::chrono::seconds(5), [&] { return master_current; }};
  runner.run(m, [&](const HookResult& r) { results.push_back(r); });
  runner.run({"replica", {}, std::chrono::seconds(5), {}}, [&](const HookResult& r) { results.push_back(r); });
  master_current = false;  // the role was lost while `data` still ran
  run_until(io, [&] { return results.size() == 3; });
  REQUIRE(results.size() == 3);
  CHECK(results[0].hook == "data");
  CHECK(results[0].ran);
  CHECK(results[1].hook == "master");
  CHECK_FALSE(results[1].ran);
  CHECK(results[1].superseded);
  CHECK(results[2].hook == "replica");
  CHECK(results[2].ran);
  CHECK_FALSE(fs::exists(d.dir / "master.log"));
  CHECK(fs::exists(d.dir / "replica.log"));
}

TEST_CASE("hooks: a running hook that is superseded is killed with its group; the next one runs") {
  HookDir d;
  // The master hook starts a child in its group, then waits.
  d.write("master", "echo $$ > \"$0.pid\"; sleep 30 & echo $! > \"$0.child\"; wait");
  d.write("replica", "echo replica >> \"$0.log\"");
  boost::asio::io_context io;
  HookRunner runner(io, d.dir.string());
  std::vector<HookResult> results;
  runner.run({"master", {}, std::chrono::seconds(20), {}}, [&](const HookResult& r) { results.push_back(r); });
  runner.run({"replica", {}, std::chrono::seconds(5), {}}, [&](const HookResult& r) { results.push_back(r); });
  run_until(io, [&] { return fs::exists(d.dir / "master.child") && !d.read("master.child").empty(); });
  CHECK(runner.running() == "master");
  auto started = std::chrono::steady_clock::now();
  runner.supersede("master");
  run_until(io, [&] { return results.size() == 2; });
  REQUIRE(results.size() == 2);
  CHECK(results[0].hook == "master");
  CHECK(results[0].superseded);
  CHECK(results[0].status == 128 + SIGKILL);
  CHECK(std::chrono::steady_clock::now() - started < std::chrono::seconds(5));
  CHECK(results[1].hook == "replica");
  CHECK(fs::exists(d.dir / "replica.log"));
  int child = std::stoi(d.read("master.child"));
  usleep(100 * 1000);
  // The hook's own child went with it: gone, or a zombie waiting for init.
  std::ifstream stat("/proc/" + std::to_string(child) + "/stat");
  std::string pid_field, comm, state;
  stat >> pid_field >> comm >> state;
  CHECK_MESSAGE((!stat || state == "Z"), "the hook's child ", child, " is still ", state);
}

TEST_CASE("hooks: a hook inherits none of the node's descriptors") {
  HookDir d;
  d.write("data", "ls /proc/self/fd > \"$0.fds\"");
  int leaked = ::socket(AF_INET, SOCK_DGRAM, 0);  // no close-on-exec, as a careless node might have
  REQUIRE(leaked > 2);
  boost::asio::io_context io;
  HookRunner runner(io, d.dir.string());
  bool done = false;
  runner.run({"data", {}, std::chrono::seconds(5), {}}, [&](const HookResult&) { done = true; });
  run_until(io, [&] { return done; });
  ::close(leaked);
  auto fds = d.read("data.fds");
  // 0, 1, 2 and the directory ls itself reads.
  int n = 0;
  for (char ch : fds) n += ch == '\n';
  CHECK_MESSAGE(n == 4, "descriptors in the hook: ", fds);
}

TEST_CASE("hooks: a hook gets its ROLEGRID_ variables and only the allowed part of the node's environment") {
  HookDir d;
  d.write("data", "env > \"$0.env\"");
  ::setenv("RG_TEST_TOKEN", "do-not-leak", 1);
  ::setenv("ROLEGRID_SECRET_FILE", "/etc/rolegrid/secret", 1);
  boost::asio::io_context io;
  HookRunner runner(io, d.dir.string());
  bool done = false;
  runner.run({"data", {{"ROLEGRID_ROLE", "data"}}, std::chrono::seconds(5), {}},
             [&](const HookResult&) { done = true; });
  run_until(io, [&] { return done; });
  ::unsetenv("RG_TEST_TOKEN");
  ::unsetenv("ROLEGRID_SECRET_FILE");
  auto env = d.read("data.env");
  CHECK(env.find("ROLEGRID_ROLE=data") != std::string::npos);
  CHECK(env.find("PATH=") != std::string::npos);
  CHECK(env.find("RG_TEST_TOKEN") == std::string::npos);
  CHECK(env.find("ROLEGRID_SECRET_FILE") == std::string::npos);
}
