// rolegrid: the node binary. Parses options, starts the grid node on one
// io_context thread, leaves the cluster gracefully on SIGINT/SIGTERM.
#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <string_view>

#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>

#include "agent/agent_node.h"
#include "common/keys.h"
#include "common/log.h"
#include "grid/node.h"
#include "programs/node_options.h"

namespace {

// `rolegrid keygen [FILE]`: a new secret, to FILE (created mode 0600, never
// overwritten) or to standard output.
int keygen(int argc, char** argv) {
  if (argc > 3) {
    std::cerr << "rolegrid: usage: rolegrid keygen [FILE]\n";
    return 2;
  }
  auto text = rg::new_secret_text();
  if (argc == 2) {
    std::cout << text;
    return 0;
  }
  int fd = ::open(argv[2], O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) {
    std::cerr << "rolegrid: keygen: cannot create " << argv[2] << ": " << std::strerror(errno)
              << (errno == EEXIST ? " (an existing secret is never overwritten)" : "") << "\n";
    return 2;
  }
  bool ok = ::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size());
  ok = ::close(fd) == 0 && ok;
  if (!ok) {
    std::cerr << "rolegrid: keygen: cannot write " << argv[2] << "\n";
    return 1;
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc >= 2 && std::string_view(argv[1]) == "keygen") return keygen(argc, argv);
  rg::tools::NodeOptions opts;
  try {
    opts = rg::tools::parse_node_options(argc, argv);
    if (opts.exit_now) return opts.exit_code;
    rg::log::init(opts.config.node, opts.config.log_level);
  } catch (const std::exception& e) {
    std::cerr << "rolegrid: " << e.what() << "\n";
    return 2;
  }
  std::signal(SIGPIPE, SIG_IGN);
  boost::asio::io_context io(1);
  std::string fatal;
  std::string removed;
  try {
    rg::grid::Node node(io, opts.config);
    rg::agent::AgentNode agent(io, node, opts.agent);
    if (opts.config.members.size() == 2)
      rg::log::warn("this cluster has 2 members and no witness: it will never promote a replica by itself "
                    "(a majority of 2 is 2); add a third member started with --witness");
    auto stop_fatally = [&](const std::string& why) {
      if (!fatal.empty()) return;
      fatal = why;
      io.stop();
    };
    node.on_fatal(stop_fatally);
    agent.on_fatal(stop_fatally);
    // Removed by a settled member change: a graceful stop (a master releases
    // its lease, hooks run), then exit 0 with the reason.
    node.on_removed([&](const std::string& why) {
      rg::log::warn("{}: leaving", why);
      agent.stop([&, why] {
        node.leave([&, why] {
          removed = why;
          io.stop();
        });
      });
    });
    boost::asio::signal_set signals(io, SIGINT, SIGTERM);
    signals.async_wait([&](auto ec, int sig) {
      if (ec) return;
      rg::log::info("signal {}: leaving", sig);
      agent.stop([&] { node.leave([&] { io.stop(); }); });
    });
    node.start();
    agent.start();
    io.run();
  } catch (const std::invalid_argument& e) {  // a data dir of another node, cluster or format
    std::cerr << "rolegrid: " << e.what() << "\n";
    return 2;
  } catch (const std::exception& e) {
    std::cerr << "rolegrid: " << e.what() << "\n";
    return 1;
  }
  if (!fatal.empty()) {
    std::cerr << "rolegrid: " << fatal << "\n";
    return 1;
  }
  if (!removed.empty()) std::cerr << "rolegrid: " << removed << "\n";
  return 0;
}
