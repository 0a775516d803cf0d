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

Topology::Topology(std::vector<NodeId> members) : members_(std::move(members)) {
  if (members_.empty()) throw std::invalid_argument("members list is empty");
  if (members_.size() > 255) throw std::invalid_argument("at most 255 members");
  for (const auto& m : members_)
    if (!valid_node_id(m))
      throw std::invalid_argument(fmt::format("member '{}' is not a valid node id ([a-z0-9-]{{1,32}})", m));
  std::sort(members_.begin(), members_.end());
  if (std::adjacent_find(members_.begin(), members_.end()) != members_.end())
    throw std::invalid_argument("members list has a duplicate id");
  // FNV-1a over the sorted list: stable across builds and machines.
  std::uint64_t h = 1469598103934665603ull;
  for (const auto& m : members_) {
    for (unsigned char c : m) h = (h ^ c) * 1099511628211ull;
    h = (h ^ ',') * 1099511628211ull;
  }
  fingerprint_ = h;
}

std::optional<MemberIndex> Topology::index_of(std::string_view id) const {
  auto it = std::lower_bound(members_.begin(), members_.end(), id);
  if (it == members_.end() || *it != id) return std::nullopt;
  return static_cast<MemberIndex>(it - members_.begin());
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
