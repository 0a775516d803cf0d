// Store: a node's regions and its lamport clock. Called by the replication
// layer (incoming writes), state transfer and anti-entropy (merges), and the
// local API (next_version for new writes), all on the event-loop thread.
#include <algorithm>

#include "grid/region.h"

namespace rg::grid {
namespace {

auto find_slot(auto& regions, const std::string& name) {
  return std::lower_bound(regions.begin(), regions.end(), name,
                          [](const auto& r, const std::string& n) { return r.first < n; });
}

}  // namespace

Region& Store::region(const std::string& name) {
  auto it = find_slot(regions_, name);
  if (it == regions_.end() || it->first != name)
    it = regions_.emplace(it, name, std::make_unique<Region>());
  return *it->second;
}

const Region* Store::find(const std::string& name) const {
  auto it = find_slot(regions_, name);
  return it != regions_.end() && it->first == name ? it->second.get() : nullptr;
}

std::vector<std::string> Store::region_names() const {
  std::vector<std::string> names;
  names.reserve(regions_.size());
  for (const auto& r : regions_) names.push_back(r.first);
  return names;
}

Version Store::next_version(MemberIndex origin) { return make_version(++lamport_, origin); }

bool Store::apply(const Write& w) {
  // Raised even for writes that lose: a later local write must still outrank
  // every version this node has heard of.
  lamport_ = std::max(lamport_, lamport_of(w.version));
  bool changed = region(w.region).apply(w);
  if (changed && on_change_) on_change_(w.region, w.key);
  return changed;
}

bool Store::merge(const std::string& name, const EntryState& e) {
  lamport_ = std::max(lamport_, lamport_of(e.version));
  for (const auto& f : e.fields) lamport_ = std::max(lamport_, lamport_of(f.version));
  bool changed = region(name).merge(e);
  if (changed && on_change_) on_change_(name, e.key);
  return changed;
}

}  // namespace rg::grid
