#include <doctest/doctest.h>

#include <sys/stat.h>

#include <cstdio>
#include <unistd.h>
#include <fstream>
#include <string>
#include <vector>

#include "grid/node_config.h"
#include "programs/node_options.h"

using namespace rg;
using namespace rg::grid;

namespace {

struct TempFile {
  std::string path;
  explicit TempFile(const std::string& content) {
    char name[] = "/tmp/rgtestXXXXXX";
    int fd = mkstemp(name);
    REQUIRE(fd >= 0);
    ::close(fd);
    path = name;
    std::ofstream(path) << content;
  }
  ~TempFile() { std::remove(path.c_str()); }
};

tools::NodeOptions parse(std::vector<std::string> args) {
  std::vector<const char*> argv{"rolegrid"};
  for (const auto& a : args) argv.push_back(a.c_str());
  return tools::parse_node_options(static_cast<int>(argv.size()), argv.data());
}

std::string error_of(std::vector<std::string> args) {
  try {
    parse(std::move(args));
  } catch (const std::invalid_argument& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST_CASE("secret files: weak, malformed and readable ones are refused; a second one is accepted") {
  std::vector<std::string> base{"--node", "n1", "--members", "n1,n2,n3", "--listen", "127.0.0.1:7401", "--admin",
                                "127.0.0.1:7501", "--multicast", "239.77.0.1:7400", "--in-memory", "--secret-file"};
  auto with = [&](const std::string& path, std::vector<std::string> more = {}) {
    auto args = base;
    args.push_back(path);
    args.insert(args.end(), more.begin(), more.end());
    return args;
  };
  TempFile weak("c2VjcmV0\n");
  CHECK(error_of(with(weak.path)).find("at least 32") != std::string::npos);
  TempFile text("topsecret\n");
  CHECK(error_of(with(text.path)).find("base64") != std::string::npos);
  TempFile good("QUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUE=\n");
  ::chmod(good.path.c_str(), 0644);
  CHECK(error_of(with(good.path)).find("readable by group or others (mode 0644)") != std::string::npos);
  ::chmod(good.path.c_str(), 0600);
  CHECK(error_of(with(good.path)) == "");
  CHECK(error_of(with("/nonexistent/secret")).find("cannot read") != std::string::npos);
  TempFile other("QkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkI=\n");
  auto o = parse(with(good.path, {"--accept-secret-file", other.path}));
  CHECK(o.config.secrets == std::vector<std::string>{std::string(32, 'A'), std::string(32, 'B')});
  CHECK(error_of(with(good.path, {"--accept-secret-file", weak.path})).find("--accept-secret-file") == 0);
}

TEST_CASE("durations") {
  CHECK(parse_duration("250ms") == std::chrono::milliseconds(250));
  CHECK(parse_duration("1.5s") == std::chrono::milliseconds(1500));
  CHECK(parse_duration("100") == std::chrono::milliseconds(100));
  CHECK(parse_duration("2m") == std::chrono::minutes(2));
  CHECK_FALSE(parse_duration("fast"));
  CHECK_FALSE(parse_duration("-5ms"));
  CHECK_FALSE(parse_duration("5 hours"));
}

TEST_CASE("node options: flags, config file and the flags-win rule") {
  TempFile secret("QUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUE=\n");
  auto o = parse({"--node", "n1", "--members", "n1,n2,n3", "--listen", "127.0.0.1:7401", "--admin",
                  "127.0.0.1:7501", "--multicast", "239.77.0.1:7400", "--secret-file", secret.path,
                  "--failure-timeout", "300ms", "--data-dir", "/var/lib/rolegrid"});
  CHECK(o.config.data_dir == "/var/lib/rolegrid");
  CHECK_FALSE(o.config.in_memory);
  CHECK(o.config.node == "n1");
  CHECK(o.config.members.size() == 3);
  CHECK(o.config.secrets == std::vector<std::string>{std::string(32, 'A')});
  CHECK(o.config.failure_timeout == std::chrono::milliseconds(300));
  CHECK(o.config.heartbeat_interval == std::chrono::milliseconds(100));
  REQUIRE(o.config.multicast);
  CHECK(o.config.multicast->port == 7400);

  TempFile file("node = \"n2\"\nmembers = \"n1,n2,n3\"\nlisten = \"127.0.0.1:7402\"\nadmin = \"127.0.0.1:7502\"\n"
                "seeds = \"127.0.0.1:7401,127.0.0.1:7403\"\nsecret-file = \"" + secret.path +
                "\"\nheartbeat-interval = \"50ms\"\nin-memory = true\n");
  auto f = parse({"--config", file.path, "--heartbeat-interval", "20ms"});
  CHECK(f.config.node == "n2");
  CHECK(f.config.seeds.size() == 2);
  CHECK_FALSE(f.config.multicast);
  CHECK(f.config.heartbeat_interval == std::chrono::milliseconds(20));  // the flag wins
  CHECK(f.config.in_memory);

  TempFile typo("node = \"n2\"\nmembers = \"n1,n2,n3\"\nlisten = \"127.0.0.1:7402\"\nadmin = \"127.0.0.1:7502\"\n"
                "seeds = \"127.0.0.1:7401\"\nsecret-file = \"" + secret.path + "\"\nfailure-timout = \"50ms\"\n"
                "in-memory = true\n");
  CHECK(error_of({"--config", typo.path}).find("failure-timout") != std::string::npos);
}

TEST_CASE("node options: every bad input is one clear reason") {
  TempFile secret("QUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUE=");
  std::vector<std::string> good{"--node", "n1", "--members", "n1,n2", "--listen", "127.0.0.1:7401",
                                "--admin", "127.0.0.1:7501", "--seeds", "127.0.0.1:7402", "--secret-file",
                                secret.path, "--in-memory"};
  CHECK(error_of(good).empty());
  auto with = [&](const std::string& flag, const std::string& value) {
    auto args = good;
    for (std::size_t i = 0; i + 1 < args.size(); ++i)
      if (args[i] == flag) {
        args[i + 1] = value;
        return error_of(args);
      }
    args.push_back(flag);
    args.push_back(value);
    return error_of(args);
  };
  CHECK(with("--node", "n9").find("not in --members") != std::string::npos);
  CHECK(with("--node", "Bad_Id").find("not a valid node id") != std::string::npos);
  CHECK(with("--members", "n1,n1").find("duplicate") != std::string::npos);
  CHECK(with("--listen", "127.0.0.1").find("HOST:PORT") != std::string::npos);
  CHECK(with("--listen", "127.0.0.1:99999").find("port") != std::string::npos);
  CHECK(with("--admin", "127.0.0.1:7401").find("must differ") != std::string::npos);
  CHECK(with("--multicast", "10.0.0.1:7400").find("multicast group") != std::string::npos);
  CHECK(with("--secret-file", "/nonexistent/secret").find("cannot read") != std::string::npos);
  CHECK(with("--failure-timeout", "soon").find("not a duration") != std::string::npos);
  CHECK(with("--failure-timeout", "150ms").find("twice") != std::string::npos);
  CHECK(with("--bogus", "1").find("bogus") != std::string::npos);
  TempFile empty("");
  CHECK(with("--secret-file", empty.path).find("holds 0 bytes") != std::string::npos);
  auto stateless = good;
  stateless.pop_back();  // drop --in-memory: neither it nor --data-dir
  CHECK(error_of(stateless).find("--data-dir is required") != std::string::npos);
  CHECK(with("--data-dir", "/var/lib/rolegrid").find("exclude each other") != std::string::npos);
  auto none = good;
  none.erase(none.begin() + 8, none.begin() + 10);  // drop --seeds
  CHECK(error_of(none).find("--multicast") != std::string::npos);
}
