#include "agent/hook_runner.h"

#include <csignal>
#include <cstring>
#include <vector>

#include <boost/asio/post.hpp>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/log.h"

extern char** environ;

namespace rg::agent {

namespace {
// What a hook inherits of the node's environment: the basics a script needs
// and nothing else, so secrets a service manager handed the node (tokens,
// ROLEGRID_SECRET_FILE, ...) do not leak into hooks and what they start.
// The ROLEGRID_* variables of the hook come from the request.
bool inherited(const char* var) {
  static const char* const kAllowed[] = {"PATH=", "HOME=", "USER=", "LOGNAME=", "SHELL=", "LANG=", "LANGUAGE=",
                                         "TZ=", "TMPDIR=", "TERM=", "LC_"};
  for (const char* a : kAllowed)
    if (std::strncmp(var, a, std::strlen(a)) == 0) return true;
  return false;
}
}  // namespace

HookRunner::HookRunner(boost::asio::io_context& io, std::string dir)
    : io_(io), dir_(std::move(dir)), sigchld_(io, SIGCHLD), limit_(io) {
  wait_children();
}

void HookRunner::wait_children() {
  sigchld_.async_wait([this](auto ec, int) {
    if (ec) return;
    reap();
    wait_children();
  });
}

void HookRunner::run(HookRequest req, Done done) {
  queue_.push_back(Job{std::move(req), std::move(done)});
  if (!running_) next();
}

void HookRunner::abort(const std::string& hook) {
  std::erase_if(queue_, [&](const Job& j) { return j.req.hook == hook; });
  if (running_ && running_->job.req.hook == hook && running_->pid > 0) {
    running_->aborted = true;
    ::kill(-running_->pid, SIGKILL);
  }
}

void HookRunner::supersede(const std::string& hook) {
  if (running_ && running_->job.req.hook == hook && running_->pid > 0 && !running_->superseded) {
    running_->superseded = true;
    ::kill(-running_->pid, SIGKILL);
  }
}

void HookRunner::next() {
  while (!running_ && !queue_.empty()) {
    Job job = std::move(queue_.front());
    queue_.pop_front();
    if (job.req.still_current && !job.req.still_current()) {
      HookResult r;
      r.hook = job.req.hook;
      r.superseded = true;
      log::info("+hook-superseded {}: dropped before it started, its role is no longer held", r.hook);
      auto done = std::move(job.done);
      boost::asio::post(io_, [done, r] { done(r); });
      continue;
    }
    std::string path = dir_.empty() ? std::string() : dir_ + "/" + job.req.hook;
    struct stat st {};
    if (path.empty() || ::stat(path.c_str(), &st) != 0 || !S_ISREG(st.st_mode) || ::access(path.c_str(), X_OK) != 0) {
      HookResult r;
      r.hook = job.req.hook;
      auto done = std::move(job.done);
      // Answer through the loop so callers never see a re-entrant callback.
      boost::asio::post(io_, [done, r] { done(r); });
      continue;
    }
    std::vector<std::string> env_strings;
    for (char** e = environ; *e; ++e)
      if (inherited(*e)) env_strings.emplace_back(*e);
    for (const auto& [k, v] : job.req.env) env_strings.push_back(k + "=" + v);
    std::vector<char*> envp;
    for (auto& s : env_strings) envp.push_back(s.data());
    envp.push_back(nullptr);
    char* argv[] = {path.data(), nullptr};
    int pid = ::fork();
    if (pid == 0) {
      ::setpgid(0, 0);
      sigset_t none;
      sigemptyset(&none);
      ::sigprocmask(SIG_SETMASK, &none, nullptr);
      ::signal(SIGPIPE, SIG_DFL);
      // None of the node's sockets or files: a daemon the hook starts must
      // not keep the node's ports bound after the node dies.
      ::close_range(3, ~0U, 0);
      ::execve(path.c_str(), argv, envp.data());
      ::_exit(127);
    }
    if (pid < 0) {
      HookResult r;
      r.hook = job.req.hook;
      r.ran = true;
      r.status = 126;
      r.error = std::strerror(errno);
      auto done = std::move(job.done);
      boost::asio::post(io_, [done, r] { done(r); });
      continue;
    }
    ::setpgid(pid, pid);
    running_ = Running{std::move(job), pid, Clock::now()};
    log::info("+hook-start {} (pid {})", running_->job.req.hook, pid);
    if (running_->job.req.on_start) running_->job.req.on_start(pid);
    limit_.expires_after(running_->job.req.limit);
    limit_.async_wait([this, pid](auto ec) {
      if (ec || !running_ || running_->pid != pid) return;
      running_->timed_out = true;
      ::kill(-pid, SIGKILL);
    });
  }
}

void HookRunner::reap() {
  for (;;) {
    int status = 0;
    int pid = ::waitpid(-1, &status, WNOHANG);
    if (pid <= 0) return;
    if (running_ && pid == running_->pid) finish(status);
  }
}

void HookRunner::finish(int wait_status) {
  Running r = std::move(*running_);
  running_.reset();
  limit_.cancel();
  // Whatever the hook left behind in its group goes with it.
  ::kill(-r.pid, SIGKILL);
  HookResult res;
  res.hook = r.job.req.hook;
  res.ran = true;
  res.timed_out = r.timed_out;
  res.aborted = r.aborted;
  res.superseded = r.superseded;
  res.took = Clock::now() - r.started;
  if (WIFEXITED(wait_status)) res.status = WEXITSTATUS(wait_status);
  else if (WIFSIGNALED(wait_status)) res.status = 128 + WTERMSIG(wait_status);
  if (res.timed_out && res.status == 0) res.status = 124;
  log::info("+hook-done {} status {}{}{}{} in {} ms", res.hook, res.status, res.timed_out ? " (timed out)" : "",
            res.aborted ? " (aborted)" : "", res.superseded ? " (killed: its role was lost)" : "", to_ms(res.took));
  r.job.done(res);
  next();
}

}  // namespace rg::agent
