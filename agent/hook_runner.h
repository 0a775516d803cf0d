#pragma once
// HookRunner: runs the operator's role-change scripts (`prepare`, `master`,
// `replica`, `data`, `abort` in the hook directory), one at a time, in the
// order asked, each in its own process group with a time limit. A hook that
// is missing counts as run with status 0 (nothing to do). The running hook
// can be aborted (claim 5: the master came back during `prepare`).
// Lives on the node's io_context thread; children are reaped via SIGCHLD.
#include <chrono>
#include <deque>
#include <functional>
#include <map>
#include <optional>
#include <string>

#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>

#include "common/clock.h"

namespace rg::agent {

struct HookRequest {
  std::string hook;
  std::map<std::string, std::string> env;  // ROLEGRID_* variables
  Duration limit = milliseconds(10000);
  // Asked just before the hook would start: false drops it unrun
  // (superseded: its role is no longer this node's). Empty: always current.
  std::function<bool()> still_current;
  // Called when its process has started (not for a dropped or missing hook):
  // the event log records when a role's service may have begun.
  std::function<void(int pid)> on_start;
};

struct HookResult {
  std::string hook;
  bool ran = false;        // false: no such executable, nothing to do
  int status = 0;          // exit status; 128+signal when killed
  bool timed_out = false;
  bool aborted = false;
  bool superseded = false;  // dropped before it started, or killed: its role was lost
  Duration took{};
  std::string error;       // could not start it
};

class HookRunner {
 public:
  using Done = std::function<void(const HookResult&)>;
  HookRunner(boost::asio::io_context& io, std::string dir);

  void run(HookRequest req, Done done);
  // Kills the running hook if it is `hook` (and forgets queued runs of it).
  void abort(const std::string& hook);
  // Kills the running hook if it is `hook`, as superseded (its role was
  // lost); queued runs stay.
  void supersede(const std::string& hook);
  // The running hook's name, "" if none.
  std::string running() const { return running_ ? running_->job.req.hook : std::string(); }
  bool busy() const { return running_.has_value(); }
  // Nothing running and nothing queued.
  bool idle() const { return !running_ && queue_.empty(); }
  const std::string& dir() const { return dir_; }

 private:
  struct Job {
    HookRequest req;
    Done done;
  };
  struct Running {
    Job job;
    int pid = 0;
    Time started{};
    bool timed_out = false;
    bool aborted = false;
    bool superseded = false;
  };
  void next();
  void reap();
  void finish(int wait_status);
  void wait_children();

  boost::asio::io_context& io_;
  std::string dir_;
  boost::asio::signal_set sigchld_;
  boost::asio::steady_timer limit_;
  std::deque<Job> queue_;
  std::optional<Running> running_;
};

}  // namespace rg::agent
