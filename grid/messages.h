#pragma once
// Every message nodes exchange, and its type code in the frame header.
//
// A frame body is one archive: a Sender, then the message. Data batches hold
// many writes, so one archive (and one syscall) carries many writes.
#include <cstdint>
#include <string>
#include <vector>

#include "common/codec.h"
#include "common/ids.h"
#include "grid/write.h"

namespace rg::grid {

enum class MsgType : std::uint8_t {
  heartbeat = 1,
  leave = 2,
  refuse = 3,
  challenge = 4,         // datagram: prove your session is live (grid/sessions.h)
  challenge_answer = 5,  // datagram: the nonce of a challenge, sealed under the challenged session
  config_ask = 6,        // datagram: send me your member configuration (issue 14)
  config_tell = 7,       // datagram: the member configuration the sender uses
  hello = 10,   // opens (or re-opens) an origin's stream to one receiver
  data = 11,    // a batch of writes of one origin's stream
  ack = 12,     // receiver -> origin: cumulative
  nak = 13,     // receiver -> origin: resend a range
  reset = 14,   // origin -> receiver: that range is gone, reconcile instead
  probe = 20,
  probe_ack = 21,
  probe_relay = 22,
  probe_relay_result = 23,
  sync_request = 30,
  sync_regions = 31,
  bucket_request = 32,
  bucket_data = 33,
  digests = 40,
  digest_diff = 41,
  key_stamps = 42,
  want = 43,
  q_prepare = 50,
  q_promise = 51,
  q_accept = 52,
  q_accepted = 53,
  q_commit = 54,
  q_recover_request = 55,
  q_recover_state = 56,
  app = 60,  // a message of a layer above the grid (the agent), by channel
  admin_request = 100,
  admin_response = 101,
};

struct Sender {
  NodeId node;
  Incarnation incarnation = 0;
  template <class Ar>
  void io(Ar& ar) {
    rg::io(ar, node);
    rg::io(ar, incarnation);
  }
};

struct Heartbeat {
  std::string address;  // listen HOST:PORT (UDP and TCP)
  std::string admin;    // admin HOST:PORT
  std::uint64_t topology = 0;
  bool synced = false;  // holds a full copy of every region (can be a donor)
  std::uint64_t stream_next = 0;
  // The member configuration's version (issue 14): a node that hears a
  // higher one asks for it, one that hears a lower one tells it.
  std::uint64_t config_version = 1;
  template <class Ar>
  void io(Ar& ar) {
    rg::io(ar, address);
    rg::io(ar, admin);
    rg::io(ar, topology);
    rg::io(ar, synced);
    rg::io(ar, stream_next);
    rg::io(ar, config_version);
  }
};

// Between nodes of one cluster (authenticated by its key, so what they tell
// is trusted): the configuration a node uses was committed (it adopted it
// from a commit, or recovered it from its peers).
struct ConfigAsk {
  std::string reply_to;  // the asker's listen HOST:PORT
  template <class Ar>
  void io(Ar& ar) {
    rg::io(ar, reply_to);
  }
};
struct ConfigTell {
  std::string record;  // an encoded ConfigRecord (grid/config_record.h)
  template <class Ar>
  void io(Ar& ar) {
    rg::io(ar, record);
  }
};

struct Leave {
  template <class Ar>
  void io(Ar&) {}
};

// Sent to a process the cluster refuses. It names the exact process (id
// and incarnation, both from its heartbeat), so a stray or replayed refusal
// never stops anyone else.
struct Refuse {
  NodeId target;
  Incarnation target_incarnation = 0;
  std::string reason;
  template <class Ar>
  void io(Ar& ar) {
    rg::io(ar, target);
    rg::io(ar, target_incarnation);
    rg::io(ar, reason);
  }
};

// Sent to the listen address a session's sender announced (in its
// heartbeat, or as a member); only the process that owns `session`
// answers, to `reply_to` (the challenger's listen address, authenticated:
// not the packet's source, which anyone can forge).
struct Challenge {
  std::string session;  // kSessionSize bytes
  std::uint64_t nonce = 0;
  std::string reply_to;
  template <class Ar>
  void io(Ar& ar) {
    rg::io(ar, session);
    rg::io(ar, nonce);
    rg::io(ar, reply_to);
  }
};

struct ChallengeAnswer {
  std::uint64_t nonce = 0;
  template <class Ar>
  void io(Ar& ar) {
    rg::io(ar, nonce);
  }
};

struct Hello {
  std::uint64_t start = 0;  // first seq this receiver must acknowledge
  template <class Ar>
  void io(Ar& ar) {
    rg::io(ar, start);
  }
};

struct Data {
  std::uint64_t first = 0;  // seq of writes[0]; the rest follow without gaps
  std::vector<Write> writes;
  template <class Ar>
  void io(Ar& ar) {
    rg::io(ar, first);
    rg::io(ar, writes);
  }
};

struct Ack {
  std::uint64_t next = 0;  // every seq below this was applied
  template <class Ar>
  void io(Ar& ar) {
    rg::io(ar, next);
  }
};

struct Nak {
  std::uint64_t from = 0;  // [from, to)
  std::uint64_t to = 0;
  template <class Ar>
  void io(Ar& ar) {
    rg::io(ar, from);
    rg::io(ar, to);
  }
};

struct Reset {
  std::uint64_t next = 0;  // skip to here; the receiver reconciles what it missed
  template <class Ar>
  void io(Ar& ar) {
    rg::io(ar, next);
  }
};

// Only `target` answers (a probe redirected to another member, or back to
// the prober, gets no answer), and the prober checks who answered.
struct Probe {
  std::uint64_t nonce = 0;
  NodeId target;
  template <class Ar>
  void io(Ar& ar) {
    rg::io(ar, nonce);
    rg::io(ar, target);
  }
};

struct ProbeRelay {
  std::uint64_t nonce = 0;
  NodeId target;
  std::string address;
  template <class Ar>
  void io(Ar& ar) {
    rg::io(ar, nonce);
    rg::io(ar, target);
    rg::io(ar, address);
  }
};

struct ProbeRelayResult {
  std::uint64_t nonce = 0;
  bool reached = false;
  template <class Ar>
  void io(Ar& ar) {
    rg::io(ar, nonce);
    rg::io(ar, reached);
  }
};

struct SyncRequest {
  template <class Ar>
  void io(Ar&) {}
};

struct RegionInfo {
  std::string name;
  std::uint64_t entries = 0;
  template <class Ar>
  void io(Ar& ar) {
    rg::io(ar, name);
    rg::io(ar, entries);
  }
};

struct SyncRegions {
  std::vector<RegionInfo> regions;
  template <class Ar>
  void io(Ar& ar) {
    rg::io(ar, regions);
  }
};

struct BucketRequest {
  std::string region;
  std::uint32_t bucket = 0;
  template <class Ar>
  void io(Ar& ar) {
    rg::io(ar, region);
    rg::io(ar, bucket);
  }
};

struct BucketData {
  std::string region;
  std::uint32_t bucket = 0;
  bool last = true;  // a big bucket comes in several frames
  std::vector<EntryState> entries;
  template <class Ar>
  void io(Ar& ar) {
    rg::io(ar, region);
    rg::io(ar, bucket);
    rg::io(ar, last);
    rg::io(ar, entries);
  }
};

struct RegionDigest {
  std::string name;
  std::vector<std::uint64_t> buckets;
  template <class Ar>
  void io(Ar& ar) {
    rg::io(ar, name);
    rg::io(ar, buckets);
  }
};

struct Digests {
  std::vector<RegionDigest> regions;
  template <class Ar>
  void io(Ar& ar) {
    rg::io(ar, regions);
  }
};

// One key and a hash of every version in its entry: equal stamps, equal entries.
struct KeyStamp {
  std::string key;
  std::uint64_t stamp = 0;
  template <class Ar>
  void io(Ar& ar) {
    rg::io(ar, key);
    rg::io(ar, stamp);
  }
};

// Anti-entropy, second step: the keys of the buckets whose digests differ.
struct KeyStamps {
  std::string region;
  std::vector<std::uint32_t> buckets;
  std::vector<KeyStamp> keys;
  template <class Ar>
  void io(Ar& ar) {
    rg::io(ar, region);
    rg::io(ar, buckets);
    rg::io(ar, keys);
  }
};

// Anti-entropy, last step: send me these entries.
struct Want {
  std::string region;
  std::vector<std::string> keys;
  template <class Ar>
  void io(Ar& ar) {
    rg::io(ar, region);
    rg::io(ar, keys);
  }
};

struct AppMessage {
  std::string channel;
  std::string payload;
  template <class Ar>
  void io(Ar& ar) {
    rg::io(ar, channel);
    rg::io(ar, payload);
  }
};

struct DigestDiff {
  std::string region;
  std::vector<std::uint32_t> buckets;
  std::vector<EntryState> entries;  // the sender's entries of those buckets
  bool reply = false;               // the receiver answers with its own entries
  template <class Ar>
  void io(Ar& ar) {
    rg::io(ar, region);
    rg::io(ar, buckets);
    rg::io(ar, entries);
    rg::io(ar, reply);
  }
};

}  // namespace rg::grid
