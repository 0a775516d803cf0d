#pragma once
// The watchdog: fences a master whose process hangs (SIGSTOP, a paused VM, a
// stuck disk) by letting a hardware or kernel timer reset the machine before
// another node can become master. As in Patroni, modes off / automatic
// (use it if it works) / required (refuse to act as master without it).
//
// Policy (Watchdog, pure: driven by acting / lease bound / now):
// - armed when this node starts acting as master, disarmed (magic close)
//   when it stops acting for any reason, so a live process steps down
//   through its hooks and only a hung one is reset;
// - its timeout T is the master's lease minus a margin, and a keepalive is
//   sent only for a committed renewal whose own bound is at least T away.
//   So the timer always fires no later than the master's own lease bound,
//   which is itself no later than the lease's end at the acceptors: a hung
//   master is reset before anybody else can be granted the role.
//
// Devices (WatchdogDevice): the Linux watchdog API (/dev/watchdog: whole
// seconds, ioctl keepalive, magic close 'V'), and `fake:FILE`, which appends
// one JSON line per operation to FILE with monotonic milliseconds, for
// tests on machines without a watchdog: the test computes expiries itself.
#include <memory>
#include <optional>
#include <string>

#include "common/clock.h"

namespace rg::agent {

enum class WatchdogMode { off, automatic, required };
std::optional<WatchdogMode> parse_watchdog_mode(const std::string& text);
const char* to_string(WatchdogMode m);

class WatchdogDevice {
 public:
  virtual ~WatchdogDevice() = default;
  // Each returns "" on success, else a one-line reason.
  virtual std::string open() = 0;  // arms the timer (Linux arms on open)
  virtual std::string set_timeout(Duration want, Duration& got) = 0;
  virtual std::string keepalive() = 0;
  virtual void magic_close() = 0;  // disarms and closes
  // The finest timeout step the device takes (1 s for Linux devices).
  virtual Duration granularity() const = 0;
};

// `fake:FILE` or a device path.
std::unique_ptr<WatchdogDevice> make_watchdog_device(const std::string& spec);

// The timeout for a lease: lease * (1 - drift) minus max(heartbeat, lease /
// 10), rounded down to the device's granularity; nullopt if that is zero.
std::optional<Duration> watchdog_timeout(Duration lease, double drift, Duration heartbeat, Duration granularity);

class Watchdog {
 public:
  Watchdog(WatchdogMode mode, std::unique_ptr<WatchdogDevice> device, Duration timeout);

  enum class Change { none, armed, kept_alive, disarmed, failed };
  struct Result {
    Change change = Change::none;
    std::string error;  // for failed
  };
  // After every agent input: `acting` (acting master now) and its lease bound.
  Result update(bool acting, Time bound, Time now);
  bool armed() const { return armed_; }
  WatchdogMode mode() const { return mode_; }
  Duration timeout() const { return timeout_; }
  std::uint64_t keepalives() const { return keepalives_; }

 private:
  Result arm(Time bound);

  WatchdogMode mode_;
  std::unique_ptr<WatchdogDevice> device_;
  Duration timeout_;
  bool armed_ = false;
  bool failed_ = false;  // automatic mode: a device that failed is left alone
  Time kept_for_{};      // the lease bound of the last keepalive
  std::uint64_t keepalives_ = 0;
};

}  // namespace rg::agent
