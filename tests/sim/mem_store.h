#pragma once
// The simulated data dir of the simulations: what a node saved survives its
// simulated crash, and every save succeeds at once.
#include <optional>
#include <string>

#include "grid/acceptor_host.h"

namespace rg::sim {

class MemStore : public grid::StateStore {
 public:
  bool save(const grid::DurableState& s, std::string&) override {
    saved = s;
    return true;
  }
  std::optional<grid::DurableState> saved;
};

}  // namespace rg::sim
