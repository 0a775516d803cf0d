#pragma once
// The simulated data dir of the simulations: what a node saved survives its
// simulated crash. Saves succeed at once, except while `failing` (a disk
// fault: the save is refused and the earlier state stays on disk).
#include <optional>
#include <string>

#include "grid/acceptor_host.h"

namespace rg::sim {

class MemStore : public grid::StateStore {
 public:
  bool save(const grid::DurableState& s, std::string& why) override {
    if (failing) {
      why = "simulated I/O error";
      return false;
    }
    saved = s;
    return true;
  }
  std::optional<grid::DurableState> saved;
  bool failing = false;
};

}  // namespace rg::sim
