// rg-bench-peers-client: the write load of tools/bench-vs-peers for Redis and
// etcd, built to cost about what rg-bench-client costs per request (one
// thread, poll(), C kept-open connections with one request in flight each),
// so the comparison measures the servers and not the clients.
// Every subcommand prints one JSON object on stdout.
//   redis-wait --addr H:P --clients C --n N --replicas R   SET then WAIT R 0, pipelined
//                                                          together; one op = both replies
//   redis-set  --addr H:P --clients C --n N                SET alone, waiting for no replica
//                                                          (the rate's ceiling on this machine)
//   redis-load --addr H:P --n N --window W                 pipelined SETs of keys k<i>
//   etcd-put   --addr H:P[,H:P..] --clients C --n N        POST /v3/kv/put (keep-alive)
//   etcd-load  --addr H:P --n N --clients C --batch B      POST /v3/kv/txn, B puts each
#include <algorithm>
#include <chrono>
#include <cstring>
#include <deque>
#include <iostream>
#include <stdexcept>
#include <string>
#include <vector>

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

using namespace std::chrono;
using nlohmann::json;

namespace {

struct Options {
  std::string addrs = "127.0.0.1:6379";
  int n = 10000;
  int clients = 1;
  int window = 1;  // requests in flight per connection
  int value_size = 100;
  int replicas = 2;
  int batch = 128;
  std::string prefix = "b";
};

double pct(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<std::size_t>(p / 100.0 * static_cast<double>(v.size())))];
}

std::string value_of(int size, long i) {
  auto s = fmt::format("{:0>{}}", i, size);
  return s.substr(0, static_cast<std::size_t>(size));
}

std::string base64(const std::string& in) {
  static const char* t = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  out.reserve((in.size() + 2) / 3 * 4);
  std::size_t i = 0;
  for (; i + 2 < in.size(); i += 3) {
    unsigned v = (static_cast<unsigned char>(in[i]) << 16) | (static_cast<unsigned char>(in[i + 1]) << 8) |
                 static_cast<unsigned char>(in[i + 2]);
    out += {t[v >> 18], t[(v >> 12) & 63], t[(v >> 6) & 63], t[v & 63]};
  }
  if (i + 1 == in.size()) {
    unsigned v = static_cast<unsigned char>(in[i]) << 16;
    out += {t[v >> 18], t[(v >> 12) & 63], '=', '='};
  } else if (i + 2 == in.size()) {
    unsigned v = (static_cast<unsigned char>(in[i]) << 16) | (static_cast<unsigned char>(in[i + 1]) << 8);
    out += {t[v >> 18], t[(v >> 12) & 63], t[(v >> 6) & 63], '='};
  }
  return out;
}

int connect_to(const std::string& hostport) {
  auto colon = hostport.rfind(':');
  if (colon == std::string::npos) throw std::runtime_error("address without port: " + hostport);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(std::stoi(hostport.substr(colon + 1))));
  if (::inet_pton(AF_INET, hostport.substr(0, colon).c_str(), &a.sin_addr) != 1)
    throw std::runtime_error("not an IPv4 address: " + hostport);
  int s = ::socket(AF_INET, SOCK_STREAM, 0);
  if (::connect(s, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0)
    throw std::runtime_error(fmt::format("connect {}: {}", hostport, std::strerror(errno)));
  int one = 1;
  ::setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  return s;
}

// A protocol turns op i into request bytes, and finds complete answers in a
// connection's input: parse() returns the bytes one answer took (0: not
// complete yet) and throws on an error answer.
struct Protocol {
  virtual ~Protocol() = default;
  virtual std::string request(long i) = 0;
  virtual std::size_t parse(const std::string& in, std::size_t pos) = 0;
  virtual int answers_per_op() const { return 1; }
};

std::string resp_command(std::initializer_list<std::string> parts) {
  std::string out = fmt::format("*{}\r\n", parts.size());
  for (const auto& p : parts) out += fmt::format("${}\r\n{}\r\n", p.size(), p);
  return out;
}

struct RedisProto : Protocol {
  const Options& o;
  bool wait;
  RedisProto(const Options& opt, bool w) : o(opt), wait(w) {}
  std::string request(long i) override {
    auto out = resp_command({"SET", fmt::format("{}{}", o.prefix, i), value_of(o.value_size, i)});
    if (wait) out += resp_command({"WAIT", std::to_string(o.replicas), "0"});
    return out;
  }
  std::size_t parse(const std::string& in, std::size_t pos) override {
    auto eol = in.find("\r\n", pos);
    if (eol == std::string::npos) return 0;
    char kind = in[pos];
    std::string line = in.substr(pos + 1, eol - pos - 1);
    if (kind == '-') throw std::runtime_error("redis: " + line);
    if (kind == ':' && wait && std::stol(line) < o.replicas)
      throw std::runtime_error(fmt::format("redis: WAIT reached {} replicas, not {}", line, o.replicas));
    if (kind != '+' && kind != ':') throw std::runtime_error("redis: unexpected reply " + line);
    return eol + 2 - pos;
  }
  int answers_per_op() const override { return wait ? 2 : 1; }
};

struct EtcdProto : Protocol {
  const Options& o;
  std::string host;
  bool txn;
  EtcdProto(const Options& opt, std::string h, bool t) : o(opt), host(std::move(h)), txn(t) {}
  std::string put_json(long i) {
    return fmt::format(R"({{"key":"{}","value":"{}"}})", base64(fmt::format("{}{}", o.prefix, i)),
                       base64(value_of(o.value_size, i)));
  }
  std::string request(long i) override {
    std::string body, path;
    if (!txn) {
      path = "/v3/kv/put";
      body = put_json(i);
    } else {
      path = "/v3/kv/txn";
      body = R"({"success":[)";
      for (long k = i * o.batch; k < std::min<long>((i + 1) * o.batch, o.n); ++k) {
        if (k != i * o.batch) body += ',';
        body += R"({"requestPut":)" + put_json(k) + "}";
      }
      body += "]}";
    }
    return fmt::format("POST {} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{}",
                       path, host, body.size(), body);
  }
  std::size_t parse(const std::string& in, std::size_t pos) override {
    auto hend = in.find("\r\n\r\n", pos);
    if (hend == std::string::npos) return 0;
    std::string head = in.substr(pos, hend - pos);
    std::string lower = head;
    std::transform(lower.begin(), lower.end(), lower.begin(), [](unsigned char ch) { return std::tolower(ch); });
    std::size_t body_at = hend + 4, end;
    if (auto cl = lower.find("content-length:"); cl != std::string::npos) {
      end = body_at + std::stoul(lower.substr(cl + 15));
      if (in.size() < end) return 0;
    } else if (lower.find("transfer-encoding: chunked") != std::string::npos) {
      std::size_t p = body_at;
      while (true) {
        auto e = in.find("\r\n", p);
        if (e == std::string::npos) return 0;
        std::size_t len = std::stoul(in.substr(p, e - p), nullptr, 16);
        p = e + 2 + len + 2;
        if (in.size() < p) return 0;
        if (len == 0) break;
      }
      end = p;
    } else {
      throw std::runtime_error("etcd: answer without a length: " + head);
    }
    if (head.compare(0, 12, "HTTP/1.1 200") != 0)
      throw std::runtime_error("etcd: " + head.substr(0, head.find("\r\n")) + " " + in.substr(body_at, end - body_at));
    return end - pos;
  }
};

struct Conn {
  int fd;
  std::string in, out;
  std::deque<steady_clock::time_point> started;
  int partial = 0;  // answers seen of the current op
};

// C connections, at most `window` ops in flight on each, ops numbered 0..ops-1.
json drive(Protocol& proto, const std::vector<std::string>& addrs, int clients, int window, long ops) {
  std::vector<Conn> conns;
  for (int i = 0; i < clients; ++i) conns.push_back(Conn{connect_to(addrs[static_cast<std::size_t>(i) % addrs.size()]), {}, {}, {}, 0});
  std::vector<double> us;
  us.reserve(static_cast<std::size_t>(ops));
  long sent = 0, done = 0;
  auto t0 = steady_clock::now();
  auto fill = [&](Conn& c) {
    while (sent < ops && static_cast<int>(c.started.size()) < window) {
      c.out += proto.request(sent++);
      c.started.push_back(steady_clock::now());
    }
  };
  for (auto& c : conns) fill(c);
  std::vector<pollfd> fds(conns.size());
  char buf[1 << 16];
  while (done < ops) {
    for (std::size_t i = 0; i < conns.size(); ++i)
      fds[i] = pollfd{conns[i].fd, static_cast<short>(POLLIN | (conns[i].out.empty() ? 0 : POLLOUT)), 0};
    if (::poll(fds.data(), fds.size(), 30000) <= 0) throw std::runtime_error("no answer within 30 s");
    for (std::size_t i = 0; i < conns.size(); ++i) {
      auto& c = conns[i];
      if (fds[i].revents & POLLOUT) {
        ssize_t w = ::send(c.fd, c.out.data(), c.out.size(), MSG_NOSIGNAL);
        if (w < 0) throw std::runtime_error(fmt::format("send: {}", std::strerror(errno)));
        c.out.erase(0, static_cast<std::size_t>(w));
      }
      if (fds[i].revents & (POLLIN | POLLHUP | POLLERR)) {
        ssize_t r = ::recv(c.fd, buf, sizeof buf, 0);
        if (r <= 0) throw std::runtime_error("the server closed a connection");
        c.in.append(buf, static_cast<std::size_t>(r));
        std::size_t pos = 0;
        while (std::size_t used = proto.parse(c.in, pos)) {
          pos += used;
          if (++c.partial < proto.answers_per_op()) continue;
          c.partial = 0;
          us.push_back(duration<double, std::micro>(steady_clock::now() - c.started.front()).count());
          c.started.pop_front();
          ++done;
        }
        c.in.erase(0, pos);
        fill(c);
      }
    }
  }
  double secs = duration<double>(steady_clock::now() - t0).count();
  for (auto& c : conns) ::close(c.fd);
  return {{"ops", ops}, {"clients", clients}, {"window", window}, {"seconds", secs},
          {"per_second", static_cast<double>(ops) / secs}, {"p50_us", pct(us, 50)}, {"p99_us", pct(us, 99)},
          {"max_us", pct(us, 100)}};
}

std::vector<std::string> split(const std::string& s) {
  std::vector<std::string> out;
  std::size_t start = 0;
  while (start <= s.size()) {
    auto comma = s.find(',', start);
    if (comma == std::string::npos) comma = s.size();
    if (comma > start) out.push_back(s.substr(start, comma - start));
    start = comma + 1;
  }
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"rg-bench-peers-client: Redis and etcd write load for tools/bench-vs-peers"};
  app.require_subcommand(1);
  Options o;
  app.add_option("--addr", o.addrs, "HOST:PORT, or several comma-separated (connections go round-robin)");
  app.add_option("--n", o.n, "operations (etcd-load: entries)");
  app.add_option("--clients", o.clients, "connections");
  app.add_option("--window", o.window, "operations in flight per connection");
  app.add_option("--value-size", o.value_size);
  app.add_option("--replicas", o.replicas, "redis-wait: replicas WAIT asks for");
  app.add_option("--batch", o.batch, "etcd-load: puts per transaction");
  app.add_option("--prefix", o.prefix, "key prefix");
  std::string mode;
  for (const char* m : {"redis-wait", "redis-set", "redis-load", "etcd-put", "etcd-load"})
    app.add_subcommand(m)->callback([&mode, m] { mode = m; });
  CLI11_PARSE(app, argc, argv);
  try {
    auto addrs = split(o.addrs);
    if (addrs.empty()) throw std::runtime_error("no --addr");
    json out;
    if (mode == "redis-wait" || mode == "redis-set") {
      RedisProto p(o, mode == "redis-wait");
      out = drive(p, addrs, o.clients, 1, o.n);
    } else if (mode == "redis-load") {
      RedisProto p(o, false);
      out = drive(p, addrs, 1, o.window, o.n);
    } else if (mode == "etcd-put") {
      EtcdProto p(o, addrs[0], false);
      out = drive(p, addrs, o.clients, 1, o.n);
    } else {
      EtcdProto p(o, addrs[0], true);
      long txns = (o.n + o.batch - 1) / o.batch;
      out = drive(p, addrs, o.clients, 1, txns);
      out["entries"] = o.n;
      out["entries_per_second"] = o.n / out["seconds"].get<double>();
    }
    std::cout << out.dump() << std::endl;
  } catch (const std::exception& e) {
    std::cerr << "rg-bench-peers-client: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
