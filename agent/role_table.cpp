#include "agent/role_table.h"

namespace rg::agent {

const char* to_string(Role r) {
  switch (r) {
    case Role::data: return "data";
    case Role::replica: return "replica";
    case Role::master: return "master";
    case Role::witness: return "witness";
  }
  return "?";
}

const char* to_string(Phase p) { return p == Phase::designated ? "designated" : "established"; }

grid::RegValue to_register(const RoleTable& t) {
  grid::RegValue v;
  v.data = encode(t);
  if (t.master) v.lease = grid::LeaseTag{t.master->node, t.master->epoch, t.master->lease_ms};
  return v;
}

std::optional<RoleTable> from_register(const grid::RegValue& v) {
  RoleTable t;
  if (!decode(v.data, t)) return std::nullopt;
  return t;
}

grid::RegValue to_register(const FailoverReservation& r) {
  grid::RegValue v;
  v.data = encode(r);
  return v;
}

std::optional<FailoverReservation> reservation_from_register(const grid::RegValue& v) {
  FailoverReservation r;
  if (!decode(v.data, r)) return std::nullopt;
  return r;
}

}  // namespace rg::agent
