#include "common/log.h"

#include <stdexcept>

#include <fmt/format.h>
#include <spdlog/sinks/stdout_color_sinks.h>

namespace rg::log {
namespace {
std::string g_node = "-";
std::string g_prefix = "[- 0 none]";
std::uint64_t g_epoch = 0;
std::string g_role = "none";

void rebuild() { g_prefix = fmt::format("[{} {} {}]", g_node, g_epoch, g_role); }
}  // namespace

void init(std::string_view node, std::string_view level) {
  auto lvl = spdlog::level::from_str(std::string(level));
  if (lvl == spdlog::level::off && level != "off")
    throw std::invalid_argument(fmt::format("unknown log level '{}'", level));
  auto logger = spdlog::stderr_color_st("rolegrid");
  logger->set_pattern("%Y-%m-%dT%H:%M:%S.%e %L %v");
  spdlog::set_default_logger(logger);
  spdlog::set_level(lvl);
  g_node = std::string(node);
  rebuild();
}

void set_role(std::uint64_t epoch, std::string_view role) {
  g_epoch = epoch;
  g_role = std::string(role);
  rebuild();
}

const std::string& prefix() { return g_prefix; }

}  // namespace rg::log
