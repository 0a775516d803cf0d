#pragma once
// MasterLease: the master's own view of its lease, a small state machine
// (none -> held -> none) driven by (operation start, now). Plain code: no
// clocks of its own, no I/O.
//
// The acceptors hold a master's lease for `lease` from when each accepted
// the value; this node cannot know those instants, only that they came
// after the operation started. So a commit of an establish, resume or
// renewal that started at S gives the bound S + lease x (1 - drift): the
// drift covers this node's clock running slow against the acceptors'. The
// bound never moves back (a late renewal commit does not shorten it), and
// stop() ends it at once: a node that stops acting never acts on a lease
// it still holds at the acceptors.
#include "common/clock.h"

namespace rg::agent {

class MasterLease {
 public:
  // `plant_from_commit`: a planted bug for the simulation's checks, which
  // counts the lease from the commit instead of the operation's start.
  MasterLease(Duration lease, double drift, Duration renew_every, bool plant_from_commit = false);

  // Our establish or resume committed: held from now on.
  void start(Time op_started, Time now);
  // A renewal that started at `op_started` committed at `now`.
  void renewed(Time op_started, Time now);
  // We stopped acting (lease lost, demoted, switched over, shutting down).
  void stop(Time now);

  bool held(Time now) const { return held_ && now < bound_; }
  // The bound: acting is allowed strictly before it.
  Time bound() const { return bound_; }
  // A renewal is due; renewal_sent() schedules the next one.
  bool renewal_due(Time now) const { return held_ && now >= next_renew_; }
  void renewal_sent(Time now) { next_renew_ = now + renew_every_; }

 private:
  Time end_for(Time op_started, Time now) const;

  Duration lease_;
  Duration renew_every_;
  bool plant_from_commit_;
  bool held_ = false;
  Time bound_{};
  Time next_renew_{};
};

}  // namespace rg::agent
