#include "agent/watchdog.h"

#include <fcntl.h>
#include <linux/watchdog.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>

#include <fmt/format.h>

namespace rg::agent {

namespace {

std::int64_t mono_ms() {
  return std::chrono::duration_cast<milliseconds>(Clock::now().time_since_epoch()).count();
}

// /dev/watchdog and the like: kept small, since it cannot be tested here.
class LinuxWatchdog : public WatchdogDevice {
 public:
  explicit LinuxWatchdog(std::string path) : path_(std::move(path)) {}
  ~LinuxWatchdog() override {
    if (fd_ >= 0) magic_close();
  }
  std::string open() override {
    fd_ = ::open(path_.c_str(), O_WRONLY | O_CLOEXEC);
    return fd_ < 0 ? fmt::format("{}: {}", path_, std::strerror(errno)) : "";
  }
  std::string set_timeout(Duration want, Duration& got) override {
    int secs = static_cast<int>(std::chrono::duration_cast<std::chrono::seconds>(want).count());
    if (::ioctl(fd_, WDIOC_SETTIMEOUT, &secs) != 0 || ::ioctl(fd_, WDIOC_GETTIMEOUT, &secs) != 0)
      return fmt::format("{}: cannot set the timeout: {}", path_, std::strerror(errno));
    got = std::chrono::seconds(secs);
    return "";
  }
  std::string keepalive() override {
    int dummy = 0;
    return ::ioctl(fd_, WDIOC_KEEPALIVE, &dummy) != 0 ? fmt::format("{}: keepalive: {}", path_, std::strerror(errno))
                                                      : "";
  }
  void magic_close() override {
    if (fd_ < 0) return;
    [[maybe_unused]] auto n = ::write(fd_, "V", 1);  // the magic character: stop the timer on close
    ::close(fd_);
    fd_ = -1;
  }
  Duration granularity() const override { return std::chrono::seconds(1); }

 private:
  std::string path_;
  int fd_ = -1;
};

// fake:FILE: one JSON line per operation, for tests.
class FakeWatchdog : public WatchdogDevice {
 public:
  explicit FakeWatchdog(std::string file) : file_(std::move(file)) {}
  std::string open() override { return line(R"("event":"open")"); }
  std::string set_timeout(Duration want, Duration& got) override {
    got = want;
    return line(fmt::format(R"("event":"timeout","timeout_ms":{})", to_ms(want)));
  }
  std::string keepalive() override { return line(R"("event":"keepalive")"); }
  void magic_close() override { line(R"("event":"magic-close")"); }
  Duration granularity() const override { return milliseconds(1); }

 private:
  std::string line(const std::string& fields) {
    std::ofstream f(file_, std::ios::app);
    f << "{" << fields << fmt::format(R"(,"t_ms":{},"pid":{})", mono_ms(), ::getpid()) << "}\n";
    f.flush();
    return f ? "" : fmt::format("{}: cannot write", file_);
  }
  std::string file_;
};

}  // namespace

std::optional<WatchdogMode> parse_watchdog_mode(const std::string& text) {
  if (text == "off") return WatchdogMode::off;
  if (text == "automatic") return WatchdogMode::automatic;
  if (text == "required") return WatchdogMode::required;
  return std::nullopt;
}

const char* to_string(WatchdogMode m) {
  switch (m) {
    case WatchdogMode::off: return "off";
    case WatchdogMode::automatic: return "automatic";
    case WatchdogMode::required: return "required";
  }
  return "?";
}

std::unique_ptr<WatchdogDevice> make_watchdog_device(const std::string& spec) {
  if (spec.starts_with("fake:")) return std::make_unique<FakeWatchdog>(spec.substr(5));
  return std::make_unique<LinuxWatchdog>(spec);
}

std::optional<Duration> watchdog_timeout(Duration lease, double drift, Duration heartbeat, Duration granularity) {
  auto bound = std::chrono::duration_cast<Duration>(lease * (1.0 - drift));
  auto margin = std::max(heartbeat, lease / 10);
  if (bound <= margin) return std::nullopt;
  auto t = bound - margin;
  t -= t % granularity;
  if (t <= Duration::zero()) return std::nullopt;
  return t;
}

Watchdog::Watchdog(WatchdogMode mode, std::unique_ptr<WatchdogDevice> device, Duration timeout)
    : mode_(mode), device_(std::move(device)), timeout_(timeout) {}

Watchdog::Result Watchdog::update(bool acting, Time bound, Time now) {
  if (mode_ == WatchdogMode::off || !device_) return {};
  if (!acting) {
    failed_ = false;  // automatic mode tries again at the next promotion
    if (!armed_) return {};
    device_->magic_close();
    armed_ = false;
    return {Change::disarmed, ""};
  }
  // A keepalive only for a renewal whose bound is at least the timeout away:
  // the timer then never outlasts the master's own lease bound.
  if (now + timeout_ > bound || (armed_ && bound <= kept_for_)) return {};
  if (!armed_) return failed_ ? Result{} : arm(bound);
  if (auto e = device_->keepalive(); !e.empty()) {
    device_->magic_close();
    armed_ = false;
    failed_ = true;
    return {Change::failed, e};
  }
  kept_for_ = bound;
  ++keepalives_;
  return {Change::kept_alive, ""};
}

Watchdog::Result Watchdog::arm(Time bound) {
  Duration got{};
  std::string e = device_->open();
  if (e.empty()) e = device_->set_timeout(timeout_, got);
  if (e.empty() && got > timeout_) e = fmt::format("the device took a timeout of {} ms, over {} ms", to_ms(got), to_ms(timeout_));
  if (e.empty()) e = device_->keepalive();
  if (!e.empty()) {
    device_->magic_close();
    failed_ = true;
    return {Change::failed, e};
  }
  armed_ = true;
  kept_for_ = bound;
  ++keepalives_;
  return {Change::armed, ""};
}

}  // namespace rg::agent
