#pragma once
// The register's side of changing the members (issue 14; DESIGN.md,
// "Changing the members"): the configuration record in the register key
// `cluster/members`, and MemberChange, which runs one change from one node:
//
//   read      a read of `cluster/members` under our configuration. A
//             change found half way (the next version, accepted by a
//             majority of ours, perhaps committed) is completed with the
//             majorities of both configurations, as it began, never with
//             ours alone; then it, or one left unsettled by its operator,
//             is settled first;
//   change    C_v -> C_{v+1} (one member more or less) by a compare-and-set
//             that needs majorities of both (QuorumProposer::change_members);
//   fence     once the caller has adopted C_{v+1}: a read of
//             `cluster/members` tagged v+1 that a majority of C_{v+1}
//             answers; each of them refuses v-tagged messages from then on,
//             and every majority of C_v contains one of them;
//   catch up  a read of every other key under C_{v+1}: whatever C_v chose is
//             then held by a majority of C_{v+1}, which stands alone from
//             then on as C_v did;
//   settle    the record marked settled: the next change may start.
//
// Pure protocol code: it asks its QuorumProposer for operations and is fed
// their results; the shell routes messages, adopts configurations from the
// commits of `cluster/members` (config_from_register) and tells it.
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "grid/config_record.h"
#include "grid/quorum.h"

namespace rg::grid {

class MemberChange {
 public:
  enum class Stage { reading, completing, changing, fencing, catching_up, settling, done, failed };
  // `keys`: every other key the register may hold (the node's are a fixed
  // set), all caught up after the fence. A key left out could hold a value
  // only the old members know (DESIGN.md, "Changing the members").
  MemberChange(NodeId id, bool add, std::vector<std::string> keys);

  void start(QuorumProposer& p, Time now, QOut& out);
  // A result of an operation it asked for (others are ignored).
  void on_result(const CasResult& r, QuorumProposer& p, Time now, QOut& out);
  // The caller adopted `version` (a commit of `cluster/members`, or
  // take_adopt()): the fence goes ahead once the change's own version is
  // adopted; a change refused for a stale configuration starts again.
  void adopted(std::uint64_t version, QuorumProposer& p, Time now, QOut& out);
  // Asks again a step that a lease refused, once that lease has ended, and
  // reads again if a newer configuration it was refused for never came.
  void tick(QuorumProposer& p, Time now, QOut& out);

  Stage stage() const { return stage_; }
  const std::string& why() const { return why_; }
  // The configuration the change made or found made (once committed).
  const std::optional<ConfigRecord>& made() const { return made_; }
  // A configuration this run's own operation committed, once: the shell
  // adopts it and calls adopted(). A commit pushed to us may be lost; our
  // own result is not.
  std::optional<ConfigRecord> take_adopt() { return std::exchange(adopt_, std::nullopt); }

  // Tests only: a planted bug the simulation must catch: no catch-up read.
  bool plant_skip_catch_up = false;
  // Tests only: a step refused for a lease is retried at once (and the
  // change fails once its retries are spent).
  bool plant_no_lease_wait = false;

 private:
  void to(Stage s);
  void ask(const std::string& key, QuorumProposer::Change change, QuorumProposer& p, Time now, QOut& out);
  void track(std::uint64_t op, const std::string& key, const QuorumProposer& p);
  void read(QuorumProposer& p, Time now, QOut& out);
  void on_read(const CasResult& r, QuorumProposer& p, Time now, QOut& out);
  void retry(const std::string& key, const CasResult& r, QuorumProposer& p, Time now, QOut& out);
  void again(const std::string& key, QuorumProposer& p, Time now, QOut& out);
  bool wait_lease(const std::string& key, const CasResult& r, Time now);
  void complete(const ConfigRecord& found, QuorumProposer& p, Time now, QOut& out);
  void change(const ConfigRecord& current, QuorumProposer& p, Time now, QOut& out);
  void on_changed(const CasResult& r, QuorumProposer& p, Time now, QOut& out);
  void settle_leftover(const ConfigRecord& rec, bool own, QuorumProposer& p, Time now, QOut& out);
  void fence(QuorumProposer& p, Time now, QOut& out);
  void catch_up(QuorumProposer& p, Time now, QOut& out);
  void settle(QuorumProposer& p, Time now, QOut& out);
  void on_settled(const CasResult& r, QuorumProposer& p, Time now, QOut& out);
  void fail(std::string why);

  NodeId id_;
  bool add_;
  std::vector<std::string> keys_;
  Stage stage_ = Stage::reading;
  std::string why_;
  std::optional<ConfigRecord> made_;    // the record being settled
  std::optional<ConfigRecord> adopt_;   // committed by our operation, for the shell to adopt
  bool own_change_ = false;             // made_ is this run's change, not a leftover settled first
  std::map<std::uint64_t, std::string> waiting_;  // the stage's operations, by id: their keys
  int attempts_ = 0;                    // no_quorum answers in this stage
  int failures_ = 0;                    // in all stages: the loop read -> change -> read ends
  std::uint64_t asked_under_ = 0;       // the configuration version of our latest operation
  std::optional<Time> lease_wait_;      // steps refused for a lease are asked again then
  std::set<std::string> lease_keys_;    // those steps' keys (the catch-up may have several)
  int lease_waits_ = 0;                 // in all: bounded, as the other retries are
  std::optional<Time> stale_wait_;      // refused as stale: read again then if not adopted meanwhile
};

const char* to_string(MemberChange::Stage s);

}  // namespace rg::grid
