#include "agent/master_lease.h"

#include <algorithm>

namespace rg::agent {

MasterLease::MasterLease(Duration lease, double drift, Duration renew_every, bool plant_from_commit)
    : lease_(static_cast<Duration::rep>(static_cast<double>(lease.count()) * (1.0 - drift))),
      renew_every_(renew_every),
      plant_from_commit_(plant_from_commit) {}

Time MasterLease::end_for(Time op_started, Time now) const {
  return (plant_from_commit_ ? now : op_started) + lease_;
}

void MasterLease::start(Time op_started, Time now) {
  held_ = true;
  bound_ = end_for(op_started, now);
  next_renew_ = now + renew_every_;
}

void MasterLease::renewed(Time op_started, Time now) {
  if (held_) bound_ = std::max(bound_, end_for(op_started, now));
}

void MasterLease::stop(Time now) {
  held_ = false;
  bound_ = std::min(bound_, now);
}

}  // namespace rg::agent
