// rg-bench-client: load generator and measurement probes for tools/bench-grid.
// Every subcommand prints one JSON object on stdout.
//   latency  --node A --n N                     one client, one put at a time
//   clients  --node A,B,.. --clients C --n N    C threads, one put at a time each
//   pipeline --node A --n N --window W          one connection, W puts in flight
//   load     --node A --n N --value-size S      pipelined bulk load (keys bench/k<i>)
//   stall    --node A --seconds S               one put at a time; max latency
//   floor    --n N                              TCP ping-pong on loopback, 64 B
//   crypto   --n N                              seal + open of one connection frame
//                                               (XChaCha20-Poly1305), 128 B and 4 KiB bodies
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <iostream>
#include <memory>
#include <numeric>
#include <thread>
#include <vector>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "common/ids.h"
#include "programs/admin_client.h"

using namespace std::chrono;
using nlohmann::json;
namespace rt = rg::tools;

namespace {

struct Common {
  std::string nodes = "127.0.0.1:7501";
  std::string secret_file;
  std::string cluster = "rolegrid";
  std::string region = "bench";
  int n = 10000;
  int clients = 16;
  int window = 1000;
  int value_size = 100;
  double seconds = 5;
};

double pct(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<std::size_t>(p / 100.0 * static_cast<double>(v.size())))];
}

std::string value_of(int size, int i) {
  auto s = fmt::format("{:0>{}}", i, size);
  return s.substr(0, static_cast<std::size_t>(size));
}

void check_ok(const rg::grid::AdminResponse& r) {
  if (r.status != rg::grid::AdminStatus::ok) throw std::runtime_error("put failed: " + r.body);
}

json latency(const Common& c, const std::string& node, int n, const std::string& prefix) {
  rt::AdminClient cl(node, c.cluster, rg::read_secret_file(c.secret_file));
  std::vector<double> us;
  us.reserve(static_cast<std::size_t>(n));
  auto t0 = steady_clock::now();
  for (int i = 0; i < n; ++i) {
    auto s = steady_clock::now();
    check_ok(cl.call("put", {c.region, fmt::format("{}{}", prefix, i), value_of(c.value_size, i)}));
    us.push_back(duration<double, std::micro>(steady_clock::now() - s).count());
  }
  double secs = duration<double>(steady_clock::now() - t0).count();
  return {{"puts", n}, {"seconds", secs}, {"per_second", n / secs}, {"p50_us", pct(us, 50)},
          {"p99_us", pct(us, 99)}, {"max_us", pct(us, 100)}};
}

json pipeline(const Common& c, const std::string& node, int n, int window, const std::string& prefix) {
  rt::AdminClient cl(node, c.cluster, rg::read_secret_file(c.secret_file));
  int sent = 0, done = 0;
  auto t0 = steady_clock::now();
  while (done < n) {
    while (sent < n && sent - done < window) {
      cl.send("put", {c.region, fmt::format("{}{}", prefix, sent), value_of(c.value_size, sent)});
      ++sent;
      if (sent % 64 == 0) cl.flush();
    }
    cl.flush();
    auto r = cl.read(milliseconds(30000));
    if (!r) throw std::runtime_error("pipeline: no answer within 30 s");
    check_ok(*r);
    ++done;
  }
  double secs = duration<double>(steady_clock::now() - t0).count();
  return {{"puts", n}, {"window", window}, {"seconds", secs}, {"per_second", n / secs}};
}

// What encryption costs a frame: one seal and one open on an established
// connection, the way Conn does them, for a small frame (an ack, a put)
// and a batch.
json crypto_cost(int n) {
  auto ring = rg::derive_ring("bench", {std::string(32, 'k')}, rg::KeyUse::peer);
  rg::DatagramCrypto hs_a(rg::cluster_id_of("bench"), ring), hs_b(rg::cluster_id_of("bench"), ring);
  rg::StreamCrypto a(hs_a, true), b(hs_b, false);
  auto hello = a.hello();
  b.on_hello(hello.data(), hello.size());
  auto answer = b.hello();
  a.on_hello(answer.data(), answer.size());
  json out;
  for (std::size_t size : {std::size_t{128}, std::size_t{4096}}) {
    std::string f;
    auto start = rg::frame_begin(f);
    f.append(size, 'v');
    rg::frame_end(f, start, 11);
    auto t0 = steady_clock::now();
    for (int i = 0; i < n; ++i) {
      a.seal(f.data());
      rg::FrameHeader h;
      std::string_view body;
      if (b.open(f.data(), f.size(), rg::kMaxStreamBody, h, body) != rg::FrameError::ok) throw std::runtime_error("open failed");
    }
    double ns = duration<double, std::nano>(steady_clock::now() - t0).count() / n;
    out[size == 128 ? "ns_128" : "ns_4096"] = ns;
  }
  return out;
}

json floor_pingpong(int n) {
  int ls = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = 0;
  ::bind(ls, reinterpret_cast<sockaddr*>(&a), sizeof a);
  socklen_t len = sizeof a;
  ::getsockname(ls, reinterpret_cast<sockaddr*>(&a), &len);
  ::listen(ls, 1);
  std::thread echo([ls, n] {
    int s = ::accept(ls, nullptr, nullptr);
    int one = 1;
    ::setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    char buf[64];
    for (int i = 0; i < n; ++i) {
      std::size_t got = 0;
      while (got < 64) got += static_cast<std::size_t>(::read(s, buf + got, 64 - got));
      if (::write(s, buf, 64) != 64) break;
    }
    ::close(s);
  });
  int s = ::socket(AF_INET, SOCK_STREAM, 0);
  ::connect(s, reinterpret_cast<sockaddr*>(&a), sizeof a);
  int one = 1;
  ::setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  char buf[64] = {};
  std::vector<double> us;
  for (int i = 0; i < n; ++i) {
    auto t = steady_clock::now();
    if (::write(s, buf, 64) != 64) break;
    std::size_t got = 0;
    while (got < 64) got += static_cast<std::size_t>(::read(s, buf + got, 64 - got));
    us.push_back(duration<double, std::micro>(steady_clock::now() - t).count());
  }
  echo.join();
  ::close(s);
  ::close(ls);
  return {{"round_trips", n}, {"p50_us", pct(us, 50)}, {"p99_us", pct(us, 99)}};
}

// C connections driven from one thread (like redis-benchmark -c C): each
// has one put outstanding and sends the next as soon as its answer arrives.
json clients(const Common& c, const std::vector<std::string>& nodes) {
  std::vector<std::unique_ptr<rt::AdminClient>> conns;
  for (int i = 0; i < c.clients; ++i)
    conns.push_back(std::make_unique<rt::AdminClient>(nodes[static_cast<std::size_t>(i) % nodes.size()], c.cluster,
                                                      rg::read_secret_file(c.secret_file)));
  std::vector<steady_clock::time_point> started(conns.size());
  std::vector<double> us;
  us.reserve(static_cast<std::size_t>(c.n));
  int sent = 0, done = 0;
  auto issue = [&](std::size_t i) {
    started[i] = steady_clock::now();
    conns[i]->send("put", {c.region, fmt::format("c{}", sent), value_of(c.value_size, sent)});
    conns[i]->flush();
    ++sent;
  };
  auto t0 = steady_clock::now();
  for (std::size_t i = 0; i < conns.size() && sent < c.n; ++i) issue(i);
  std::vector<pollfd> fds(conns.size());
  while (done < c.n) {
    for (std::size_t i = 0; i < conns.size(); ++i) fds[i] = pollfd{conns[i]->fd(), POLLIN, 0};
    if (::poll(fds.data(), fds.size(), 30000) <= 0) throw std::runtime_error("clients: no answer within 30 s");
    for (std::size_t i = 0; i < conns.size(); ++i) {
      if (!(fds[i].revents & POLLIN)) continue;
      while (auto r = conns[i]->read(milliseconds(0))) {
        check_ok(*r);
        us.push_back(duration<double, std::micro>(steady_clock::now() - started[i]).count());
        ++done;
        if (sent < c.n) issue(i);
      }
    }
  }
  double secs = duration<double>(steady_clock::now() - t0).count();
  return {{"clients", c.clients}, {"puts", c.n}, {"seconds", secs}, {"per_second", c.n / secs},
          {"p50_us", pct(us, 50)}, {"p99_us", pct(us, 99)}};
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"rg-bench-client: load and measurements for tools/bench-grid"};
  app.require_subcommand(1);
  Common c;
  app.add_option("--node", c.nodes, "admin HOST:PORT, or several comma-separated");
  app.add_option("--secret-file", c.secret_file);
  app.add_option("--cluster", c.cluster);
  app.add_option("--region", c.region);
  app.add_option("--n", c.n);
  app.add_option("--clients", c.clients);
  app.add_option("--window", c.window);
  app.add_option("--value-size", c.value_size);
  app.add_option("--seconds", c.seconds);
  std::string mode;
  for (const char* m : {"latency", "clients", "pipeline", "load", "stall", "floor", "crypto"})
    app.add_subcommand(m)->callback([&mode, m] { mode = m; });
  CLI11_PARSE(app, argc, argv);
  try {
    auto nodes = rg::split_list(c.nodes);
    json out;
    if (mode == "latency") out = latency(c, nodes.at(0), c.n, "lat");
    else if (mode == "pipeline") out = pipeline(c, nodes.at(0), c.n, c.window, "pipe");
    else if (mode == "load") out = pipeline(c, nodes.at(0), c.n, c.window, "k");
    else if (mode == "floor") out = floor_pingpong(c.n);
    else if (mode == "crypto") out = crypto_cost(c.n);
    else if (mode == "clients") {
      out = clients(c, nodes);
    } else if (mode == "stall") {
      rt::AdminClient cl(nodes.at(0), c.cluster, rg::read_secret_file(c.secret_file));
      std::vector<double> us;
      auto t0 = steady_clock::now();
      auto end = t0 + duration<double>(c.seconds);
      double worst = 0, worst_at = 0;
      int i = 0;
      while (steady_clock::now() < end) {
        auto s = steady_clock::now();
        check_ok(cl.call("put", {c.region, fmt::format("stall{}", i), value_of(c.value_size, i)}));
        double took = duration<double, std::micro>(steady_clock::now() - s).count();
        if (took > worst) {
          worst = took;
          worst_at = duration<double>(s - t0).count();
        }
        us.push_back(took);
        ++i;
      }
      out = {{"puts", i}, {"p50_us", pct(us, 50)}, {"p99_us", pct(us, 99)}, {"max_us", pct(us, 100)},
             {"worst_at_s", worst_at}};
    }
    std::cout << out.dump() << std::endl;
  } catch (const std::exception& e) {
    std::cerr << "rg-bench-client: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
