#pragma once
// NodeContext: what the parts of one node share (the links, the write path,
// state transfer, the quorum host): who it is, how it seals frames, what it
// counts, its fault rules (tests only). Owned by Node, which outlives the
// parts; they hold a reference. One io_context thread, like the node.
#include <boost/asio/io_context.hpp>

#include <cstdint>
#include <optional>
#include <string>

#include "common/codec.h"
#include "common/frame.h"
#include "grid/envelope.h"
#include "grid/faults.h"
#include "grid/messages.h"
#include "grid/node_config.h"

namespace rg::grid {

struct NodeCounters {
  std::uint64_t datagrams_in = 0;
  std::uint64_t datagrams_out = 0;
  std::uint64_t datagrams_dropped = 0;  // malformed, oversized, undecodable
  std::uint64_t unauthenticated = 0;    // bad authenticator or wrong cluster (UDP and TCP)
  std::uint64_t replayed = 0;           // authentic datagrams seen before, or from another sender's session
  std::uint64_t unverified = 0;         // authentic datagrams from a session not (yet) proven live
  std::uint64_t challenges_sent = 0;
  std::uint64_t challenges_answered = 0;
  std::uint64_t decode_errors = 0;      // authenticated but undecodable
  std::uint64_t send_errors = 0;
  std::uint64_t writes_local = 0;
  std::uint64_t writes_applied = 0;     // remote writes received (incl. duplicates)
  std::uint64_t naks_sent = 0;
  std::uint64_t naks_received = 0;
  std::uint64_t resets = 0;
  std::uint64_t refusals_sent = 0;
  std::uint64_t refused_messages = 0;  // from non-members, duplicates, stale incarnations
  std::uint64_t probes = 0;
  std::uint64_t anti_entropy_rounds = 0;
  std::uint64_t entries_reconciled = 0;
  std::uint64_t link_queue_drops = 0;
  std::uint64_t stale_config_refusals = 0;  // register answers naming a newer member configuration
};

struct NodeContext {
  boost::asio::io_context& io;
  const NodeConfig& config;
  DatagramCrypto& crypto;  // peer key: seals datagrams and connection handshakes
  Sender self;  // this node and its incarnation
  NodeCounters& counters;
  std::optional<FaultRules>& faults;
  bool leaving = false;  // the node said goodbye: no new work

  // One frame, unsealed: header, the archive of {self, msg}, tag space. The
  // transport seals it as it leaves (a connection, or send_udp).
  template <class M>
  std::string frame(MsgType type, const M& msg) const {
    std::string out;
    append_frame(out, type, msg);
    return out;
  }
  // The same, appended to `out` in place (a connection's send queue).
  template <class M>
  void append_frame(std::string& out, MsgType type, const M& msg) const {
    auto start = frame_begin(out);
    encode_into(out, Envelope<M>{self, msg});
    frame_end(out, start, static_cast<std::uint8_t>(type));
  }
  // Fault injection: whether messages to `peer` are to be dropped now.
  bool drop_out(const NodeId& peer) { return faults && faults->drop_out(peer); }
};

}  // namespace rg::grid
