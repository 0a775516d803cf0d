#include "grid/node_config.h"

#include <charconv>
#include <cmath>

#include <boost/asio/ip/address_v4.hpp>
#include <fmt/format.h>

namespace rg::grid {

std::optional<Duration> parse_duration(std::string_view text) {
  double number = 0;
  auto [p, ec] = std::from_chars(text.data(), text.data() + text.size(), number);
  if (ec != std::errc{} || number < 0 || !std::isfinite(number)) return std::nullopt;
  std::string_view unit(p, text.data() + text.size() - p);
  double ms = 0;
  if (unit.empty() || unit == "ms") ms = number;
  else if (unit == "s") ms = number * 1000;
  else if (unit == "m") ms = number * 60000;
  else if (unit == "us") ms = number / 1000;
  else return std::nullopt;
  return std::chrono::duration_cast<Duration>(std::chrono::duration<double, std::milli>(ms));
}

std::string validate(const NodeConfig& c) {
  if (!valid_node_id(c.node))
    return fmt::format("--node '{}' is not a valid node id ([a-z0-9-]{{1,32}})", c.node);
  if (c.members.empty()) return "--members is required (the node ids of the whole cluster)";
  try {
    Topology t(c.members);
    if (!t.contains(c.node))
      return fmt::format("--node '{}' is not in --members ({})", c.node, fmt::join(t.members(), ","));
  } catch (const std::exception& e) {
    return fmt::format("--members: {}", e.what());
  }
  if (c.listen.port == 0) return "--listen HOST:PORT is required";
  if (c.admin.port == 0) return "--admin HOST:PORT is required";
  if (c.listen == c.admin) return "--listen and --admin must differ";
  if (!c.multicast && c.seeds.empty())
    return "give --multicast GROUP:PORT or --seeds HOST:PORT,... to find the other members";
  if (c.multicast) {
    boost::system::error_code ec;
    auto a = boost::asio::ip::make_address_v4(c.multicast->host, ec);
    if (ec || !a.is_multicast())
      return fmt::format("--multicast {} is not an IPv4 multicast group (224.0.0.0/4)", c.multicast->str());
    if (c.multicast->port == c.listen.port)
      return "--multicast port must differ from the --listen port";
  }
  if (c.secrets.empty()) return "no cluster secret (--secret-file names a file with the secret)";
  if (!valid_node_id(c.cluster)) return fmt::format("--cluster '{}' is not a valid name ([a-z0-9-]{{1,32}})", c.cluster);
  if (c.heartbeat_interval < milliseconds(5)) return "--heartbeat-interval must be at least 5ms";
  if (c.failure_timeout < 2 * c.heartbeat_interval)
    return "--failure-timeout must be at least twice --heartbeat-interval";
  if (c.probe_timeout < milliseconds(10)) return "--probe-timeout must be at least 10ms";
  if (c.anti_entropy_interval < milliseconds(100)) return "--anti-entropy-interval must be at least 100ms";
  return {};
}

}  // namespace rg::grid
