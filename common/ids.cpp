#include "common/ids.h"

#include <algorithm>
#include <charconv>
#include <stdexcept>

#include <boost/asio/ip/address_v4.hpp>
#include <fmt/format.h>

namespace rg {

bool valid_node_id(std::string_view id) {
  if (id.empty() || id.size() > 32) return false;
  return std::all_of(id.begin(), id.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-';
  });
}

std::string Endpoint::str() const { return fmt::format("{}:{}", host, port); }

std::optional<Endpoint> parse_endpoint(std::string_view text, std::string* why) {
  auto fail = [&](std::string reason) -> std::optional<Endpoint> {
    if (why) *why = std::move(reason);
    return std::nullopt;
  };
  auto colon = text.rfind(':');
  if (colon == std::string_view::npos) return fail(fmt::format("'{}' is not HOST:PORT", text));
  std::string host(text.substr(0, colon));
  auto port_text = text.substr(colon + 1);
  unsigned port = 0;
  auto [p, ec] = std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
  if (ec != std::errc{} || p != port_text.data() + port_text.size() || port == 0 || port > 65535)
    return fail(fmt::format("'{}' has no valid port (1-65535)", text));
  boost::system::error_code bad;
  boost::asio::ip::make_address_v4(host, bad);
  if (bad) return fail(fmt::format("'{}' is not a numeric IPv4 address", host));
  return Endpoint{host, static_cast<std::uint16_t>(port)};
}

std::optional<std::uint64_t> parse_epoch(std::string_view text) {
  std::uint64_t e = 0;
  auto [p, ec] = std::from_chars(text.data(), text.data() + text.size(), e);
  if (ec != std::errc() || p != text.data() + text.size() || e == 0 || e > (std::uint64_t{1} << 63)) return std::nullopt;
  return e;
}

namespace {

// FNV-1a: stable across builds and machines.
void fnv(std::uint64_t& h, unsigned char c) { h = (h ^ c) * 1099511628211ull; }

}  // namespace

Topology::Topology(std::vector<NodeId> members) {
  std::vector<Member> indexed;
  for (auto& id : members) indexed.push_back(Member{std::move(id), 0});
  check_and_sort(indexed);
  version_ = 1;
  for (std::size_t i = 0; i < indexed.size(); ++i) {
    members_.push_back(indexed[i].id);
    indices_.push_back(static_cast<MemberIndex>(i));
  }
  fingerprint_ = digest();
}

Topology::Topology(std::uint64_t version, std::vector<Member> members) {
  if (version == 0) throw std::invalid_argument("a configuration's version starts at 1");
  check_and_sort(members);
  for (std::size_t i = 0; i < members.size(); ++i)
    for (std::size_t j = i + 1; j < members.size(); ++j)
      if (members[i].index == members[j].index) throw std::invalid_argument("two members share an index");
  for (const auto& m : members) {
    if (m.index >= 255) throw std::invalid_argument("member indices run out at 255");
    members_.push_back(m.id);
    indices_.push_back(m.index);
  }
  version_ = version;
  fingerprint_ = digest();
}

// Version 1 with the sorted positions as indices (any `--members` list)
// hashes the sorted list only: the digest heartbeats carried before
// versions existed. Any other configuration hashes its version and indices
// too.
std::uint64_t Topology::digest() const {
  bool positional = version_ == 1;
  for (std::size_t i = 0; i < indices_.size(); ++i) positional = positional && indices_[i] == i;
  std::uint64_t h = 1469598103934665603ull;
  if (!positional)
    for (int shift = 0; shift < 64; shift += 8) fnv(h, static_cast<unsigned char>(version_ >> shift));
  for (std::size_t i = 0; i < members_.size(); ++i) {
    for (unsigned char c : members_[i]) fnv(h, c);
    if (!positional) {
      fnv(h, '=');
      fnv(h, static_cast<unsigned char>(indices_[i]));
    }
    fnv(h, ',');
  }
  return h;
}

void Topology::check_and_sort(std::vector<Member>& members) const {
  if (members.empty()) throw std::invalid_argument("members list is empty");
  if (members.size() > 255) throw std::invalid_argument("at most 255 members");
  for (const auto& m : members)
    if (!valid_node_id(m.id))
      throw std::invalid_argument(fmt::format("member '{}' is not a valid node id ([a-z0-9-]{{1,32}})", m.id));
  std::sort(members.begin(), members.end(), [](const Member& a, const Member& b) { return a.id < b.id; });
  for (std::size_t i = 1; i < members.size(); ++i)
    if (members[i].id == members[i - 1].id) throw std::invalid_argument("members list has a duplicate id");
}

std::optional<MemberIndex> Topology::index_of(std::string_view id) const {
  auto it = std::lower_bound(members_.begin(), members_.end(), id);
  if (it == members_.end() || *it != id) return std::nullopt;
  return indices_[static_cast<std::size_t>(it - members_.begin())];
}

std::vector<Topology::Member> Topology::indexed() const {
  std::vector<Member> out;
  for (std::size_t i = 0; i < members_.size(); ++i) out.push_back(Member{members_[i], indices_[i]});
  return out;
}

std::vector<std::string> split_list(std::string_view text) {
  std::vector<std::string> out;
  std::size_t start = 0;
  while (start <= text.size()) {
    auto end = text.find(',', start);
    if (end == std::string_view::npos) end = text.size();
    auto part = text.substr(start, end - start);
    while (!part.empty() && part.front() == ' ') part.remove_prefix(1);
    while (!part.empty() && part.back() == ' ') part.remove_suffix(1);
    if (!part.empty()) out.emplace_back(part);
    start = end + 1;
  }
  return out;
}

}  // namespace rg
