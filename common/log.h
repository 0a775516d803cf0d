#pragma once
// The one logging facade. Every line carries "[node epoch role]" so lines from
// a local cluster's nodes can be merged and still read. The prefix is set by
// the node (id) and the agent (epoch, role); everything runs on the node's
// one event-loop thread.
#include <string>
#include <string_view>

#include <spdlog/spdlog.h>

namespace rg::log {

void init(std::string_view node, std::string_view level);  // throws on a bad level name
void set_role(std::uint64_t epoch, std::string_view role);
const std::string& prefix();

template <class... A>
void debug(fmt::format_string<A...> f, A&&... a) {
  if (spdlog::should_log(spdlog::level::debug))
    spdlog::debug("{} {}", prefix(), fmt::format(f, std::forward<A>(a)...));
}
template <class... A>
void info(fmt::format_string<A...> f, A&&... a) {
  if (spdlog::should_log(spdlog::level::info))
    spdlog::info("{} {}", prefix(), fmt::format(f, std::forward<A>(a)...));
}
template <class... A>
void warn(fmt::format_string<A...> f, A&&... a) {
  spdlog::warn("{} {}", prefix(), fmt::format(f, std::forward<A>(a)...));
}
template <class... A>
void error(fmt::format_string<A...> f, A&&... a) {
  spdlog::error("{} {}", prefix(), fmt::format(f, std::forward<A>(a)...));
}

}  // namespace rg::log
