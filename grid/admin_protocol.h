#pragma once
// The admin protocol between rolegridctl (or any client) and a node: framed
// and authenticated like peer traffic, on the node's admin port. A request
// names a command and its arguments; the answer is JSON text. A client may
// pipeline many requests on one connection; answers carry the request id and
// may come back out of order (a put answers when it is write-through).
#include <cstdint>
#include <string>
#include <vector>

#include "common/codec.h"

namespace rg::grid {

enum class AdminStatus : std::uint8_t {
  ok = 0,
  error = 1,  // body: a one-line reason
  more = 2,   // one item of a stream (watch, events --follow); more follow
};

struct AdminRequest {
  std::uint64_t id = 0;
  std::string cmd;
  std::vector<std::string> args;
  template <class Ar>
  void io(Ar& ar) {
    rg::io(ar, id);
    rg::io(ar, cmd);
    rg::io(ar, args);
  }
};

struct AdminResponse {
  std::uint64_t id = 0;
  AdminStatus status = AdminStatus::ok;
  std::string body;     // JSON (ok, more) or a reason (error)
  std::string context;  // JSON object the node adds to every answer (cluster summary)
  template <class Ar>
  void io(Ar& ar) {
    rg::io(ar, id);
    rg::io(ar, status);
    rg::io(ar, body);
    rg::io(ar, context);
  }
};

}  // namespace rg::grid
