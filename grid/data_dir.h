#pragma once
// DataDir: a node's --data-dir, where its DurableState (acceptor promises and
// accepted values, and the agent's notes) lives. Part of the I/O shell.
//
// One file, `acceptor.state`, rewritten in place and fdatasync'd on every
// save; save() returns only once the bytes are durable. A lock file keeps a
// second process off the same dir.
//
//    offset  size  field
//   +-------+-----+---------------------------------------------------+
//   |    0  |  4  | magic "RGAS"                                      |
//   |    4  |  4  | format version (kFormatVersion), little endian    |
//   |    8  |  8  | sequence: grows with every save                   |
//   |   16  |  4  | payload length N (capped at kMaxPayload)          |
//   |   20  |  N  | payload: archive of {node id, cluster, state}     |
//   | 20+N  | 16  | BLAKE2b-128 of bytes [0, 20+N)                    |
//   +-------+-----+---------------------------------------------------+
//
// A torn or damaged file fails the checksum and counts as lost state: the
// node then recovers as a fresh acceptor (AcceptorHost's rules), which is
// sound whatever the damage; an older copy would not be (it may predate a
// vote). A file of another node or cluster, or of another format version,
// is refused: that is an operator's mistake, not damage.
//
// The member list the dir was first saved under travels in the state's
// notes (kMembersNote, added by save() and taken out by load()). A start
// with another list is refused: members of a running cluster must not
// change by restarting nodes with a new list, since the nodes on the old
// list and those on the new one could each be a majority of their own list
// and each elect a master (README, "Changing the members"). A file saved
// before the list was kept has none and takes the list of its next save.
#include <cstdint>
#include <functional>
#include <optional>
#include <string>

#include "grid/acceptor_host.h"

namespace rg::grid {

class DataDir : public StateStore {
 public:
  static constexpr std::uint32_t kFormatVersion = 1;
  static constexpr std::uint32_t kMaxPayload = 16 * 1024 * 1024;
  static constexpr const char* kMembersNote = "grid.members";

  enum class Found { nothing, intact, corrupt };
  struct Loaded {
    Found found = Found::nothing;
    DurableState state;
    std::string problem;  // corrupt: what is wrong, in one line
  };

  // Creates the dir (mode 0700) if missing and locks it; throws
  // std::invalid_argument (not a directory) or std::runtime_error (cannot
  // create or write it, in use by another process) with a one-line reason.
  // `topology`: the cluster's member list.
  DataDir(std::string path, NodeId node, std::string cluster, const Topology& topology);
  ~DataDir() override;
  DataDir(const DataDir&) = delete;
  DataDir& operator=(const DataDir&) = delete;

  // What the dir holds. Throws std::invalid_argument (one line) for a file
  // of another node, cluster, member list or format version;
  // std::runtime_error if it cannot be read.
  Loaded load();
  bool save(const DurableState& state, std::string& why) override;

  // Tests only (fault injection): while it returns a reason, saves fail with it.
  void set_fault(std::function<std::string()> fault) { fault_ = std::move(fault); }
  const std::string& path() const { return path_; }
  std::string file() const;

 private:
  void check_members(DurableState& state) const;

  std::string path_;
  NodeId node_;
  std::string cluster_;
  std::string members_;  // the topology's (sorted) ids, comma-separated: the kMembersNote value
  int lock_fd_ = -1;
  int fd_ = -1;
  std::uint64_t sequence_ = 0;
  std::function<std::string()> fault_;
};

}  // namespace rg::grid
