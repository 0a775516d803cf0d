// The watchdog policy (agent/watchdog.h) against a recording device: when it
// arms, keeps alive and disarms, and that its timer never outlasts the
// master's own lease bound.
#include <doctest/doctest.h>

#include <memory>
#include <string>
#include <vector>

#include "agent/watchdog.h"

using namespace rg;
using namespace rg::agent;

namespace {

struct Log {
  std::vector<std::string> ops;
  bool fail_open = false;
  bool fail_keepalive = false;
};

class RecordingDevice : public WatchdogDevice {
 public:
  explicit RecordingDevice(std::shared_ptr<Log> log) : log_(std::move(log)) {}
  std::string open() override {
    log_->ops.push_back("open");
    return log_->fail_open ? "no such device" : "";
  }
  std::string set_timeout(Duration want, Duration& got) override {
    got = want;
    log_->ops.push_back("timeout " + std::to_string(to_ms(want)));
    return "";
  }
  std::string keepalive() override {
    log_->ops.push_back("keepalive");
    return log_->fail_keepalive ? "device gone" : "";
  }
  void magic_close() override { log_->ops.push_back("close"); }
  Duration granularity() const override { return milliseconds(1); }

 private:
  std::shared_ptr<Log> log_;
};

Time at(int ms) { return Time{} + milliseconds(ms); }

}  // namespace

TEST_CASE("watchdog: timeout is the lease bound minus a margin, in the device's steps") {
  // 1000 ms lease, 5% drift, 100 ms heartbeat: 950 - 100.
  CHECK(watchdog_timeout(milliseconds(1000), 0.05, milliseconds(100), milliseconds(1)) == milliseconds(850));
  // A Linux device counts whole seconds: 1 s of lease leaves nothing.
  CHECK_FALSE(watchdog_timeout(milliseconds(1000), 0.05, milliseconds(100), std::chrono::seconds(1)));
  CHECK(watchdog_timeout(milliseconds(3000), 0.05, milliseconds(100), std::chrono::seconds(1)) ==
        std::chrono::seconds(2));
}

TEST_CASE("watchdog: armed when acting, kept alive per renewal, disarmed on step-down") {
  auto log = std::make_shared<Log>();
  Watchdog w(WatchdogMode::required, std::make_unique<RecordingDevice>(log), milliseconds(850));
  CHECK(w.update(false, at(0), at(0)).change == Watchdog::Change::none);
  CHECK(log->ops.empty());
  // Establish committed at 10 ms, operation started at 5: bound 955.
  CHECK(w.update(true, at(955), at(10)).change == Watchdog::Change::armed);
  CHECK(log->ops == std::vector<std::string>{"open", "timeout 850", "keepalive"});
  // No new renewal: no keepalive, however often it is asked.
  CHECK(w.update(true, at(955), at(50)).change == Watchdog::Change::none);
  // A renewal committed promptly: kept alive.
  CHECK(w.update(true, at(1055), at(110)).change == Watchdog::Change::kept_alive);
  // One committed late (its bound less than the timeout away): skipped, so
  // the timer still fires by the earlier bound.
  CHECK(w.update(true, at(1155), at(400)).change == Watchdog::Change::none);
  CHECK(log->ops.back() == "keepalive");
  CHECK(w.keepalives() == 2);
  // Lease lost or stepped down: magic close.
  CHECK(w.update(false, at(1155), at(1200)).change == Watchdog::Change::disarmed);
  CHECK(log->ops.back() == "close");
  CHECK_FALSE(w.armed());
}

TEST_CASE("watchdog: the timer never outlasts the master's own lease bound") {
  auto log = std::make_shared<Log>();
  const auto t = milliseconds(850);
  Watchdog w(WatchdogMode::automatic, std::make_unique<RecordingDevice>(log), t);
  // Renewals every 100 ms, each committing 0..300 ms after its start (bound
  // = start + 950): after every keepalive, keepalive time + T <= that bound.
  Time last_keepalive{};
  Time bound_of_keepalive{};
  for (int i = 0; i < 200; ++i) {
    int start = i * 100;
    int latency = (i * 37) % 300;
    Time bound = at(start + 950);
    auto now = at(start + latency);
    auto r = w.update(true, bound, now);
    if (r.change == Watchdog::Change::armed || r.change == Watchdog::Change::kept_alive) {
      last_keepalive = now;
      bound_of_keepalive = bound;
    }
    CHECK(last_keepalive + t <= bound_of_keepalive);
  }
  CHECK(w.keepalives() > 50);
}

TEST_CASE("watchdog: a device that fails is reported, closed, and tried again at the next promotion") {
  auto log = std::make_shared<Log>();
  log->fail_open = true;
  Watchdog w(WatchdogMode::automatic, std::make_unique<RecordingDevice>(log), milliseconds(850));
  auto r = w.update(true, at(955), at(10));
  CHECK(r.change == Watchdog::Change::failed);
  CHECK(r.error == "no such device");
  CHECK_FALSE(w.armed());
  CHECK(w.update(true, at(1055), at(110)).change == Watchdog::Change::none);  // not retried while master
  CHECK(w.update(false, at(1055), at(1100)).change == Watchdog::Change::none);
  log->fail_open = false;
  CHECK(w.update(true, at(2955), at(2010)).change == Watchdog::Change::armed);
  log->fail_keepalive = true;
  r = w.update(true, at(3055), at(2110));
  CHECK(r.change == Watchdog::Change::failed);
  CHECK(log->ops.back() == "close");
}

TEST_CASE("watchdog: off does nothing") {
  auto log = std::make_shared<Log>();
  Watchdog w(WatchdogMode::off, std::make_unique<RecordingDevice>(log), milliseconds(850));
  CHECK(w.update(true, at(955), at(10)).change == Watchdog::Change::none);
  CHECK(log->ops.empty());
  CHECK(parse_watchdog_mode("required") == WatchdogMode::required);
  CHECK_FALSE(parse_watchdog_mode("sometimes"));
}
