#pragma once
// One filled-in sample of every message that crosses the wire, shared by
// the decoder test and the libFuzzer target.
#include "grid/admin_protocol.h"
#include "grid/envelope.h"
#include "grid/messages.h"
#include "grid/quorum.h"

namespace rg::grid {

template <class F>
void for_each_sample(F&& f) {
  Sender s{"n1", 12345};
  Write w1{"reg", "key", WriteKind::put, {}, "value", 77};
  Write w2{"reg", "key2", WriteKind::put_field, "f", "v", 78};
  Write w3{"reg", "key3", WriteKind::del, {}, {}, 79};
  EntryState e1{"k", EntryKind::fields, 5, {}, {FieldValue{"a", 6, "x"}, FieldValue{"b", 9, "y"}}};
  EntryState e2{"k2", EntryKind::plain, 3, "hello", {}};
  f(Envelope<Heartbeat>{s, {"127.0.0.1:7401", "127.0.0.1:7501", 99, true, 42}}, "heartbeat");
  f(Envelope<Leave>{s, {}}, "leave");
  f(Envelope<Refuse>{s, {"n9", 77, "not a member"}}, "refuse");
  f(Envelope<Hello>{s, {5}}, "hello");
  f(Envelope<Data>{s, {10, {w1, w2, w3}}}, "data");
  f(Envelope<Ack>{s, {11}}, "ack");
  f(Envelope<Nak>{s, {3, 9}}, "nak");
  f(Envelope<Reset>{s, {20}}, "reset");
  f(Envelope<Probe>{s, {1, {}}}, "probe");
  f(Envelope<ProbeRelay>{s, {2, "n3", "127.0.0.1:7403"}}, "probe_relay");
  f(Envelope<ProbeRelayResult>{s, {2, true}}, "probe_relay_result");
  f(Envelope<SyncRequest>{s, {}}, "sync_request");
  f(Envelope<SyncRegions>{s, {{RegionInfo{"reg", 3}, RegionInfo{"nodes", 1}}}}, "sync_regions");
  f(Envelope<BucketRequest>{s, {"reg", 17}}, "bucket_request");
  f(Envelope<BucketData>{s, {"reg", 17, true, {e1, e2}}}, "bucket_data");
  f(Envelope<Digests>{s, {{RegionDigest{"reg", {1, 2, 3}}}}}, "digests");
  f(Envelope<DigestDiff>{s, {"reg", {1, 5}, {e1, e2}, true}}, "digest_diff");
  f(Envelope<KeyStamps>{s, {"reg", {1, 2}, {KeyStamp{"k", 9}, KeyStamp{"k2", 10}}}}, "key_stamps");
  f(Envelope<Want>{s, {"reg", {"k", "k2"}}}, "want");
  f(Envelope<QRecoverRequest>{s, {0x1234567890abcdefULL}}, "q_recover_request");
  f(Envelope<QRecoverState>{s, {0x1234567890abcdefULL, false, {QSlotState{"roles/table", {5, 1}, true, {4, 2}, RegValue{"d", {"n1", 3, 1000}}}}, {2, 0xfeedULL}}},
    "q_recover_state");
  RegValue rv{"table", {"n1", 3, 1000}};
  f(Envelope<QPrepare>{s, {"roles/table", {5, 1}, 7, "n2", {2, 0xfeedULL}}}, "q_prepare");
  f(Envelope<QPromise>{s, {"roles/table", {5, 1}, 7, true, {4, 2}, true, {4, 1}, rv, true, "n1", 250, false, {3, 0xbeefULL}}}, "q_promise");
  f(Envelope<QAccept>{s, {"roles/table", {5, 1}, {6, 1}, 7, rv, true, 120, {2, 0xfeedULL}}}, "q_accept");
  f(Envelope<QAccepted>{s, {"roles/table", {5, 1}, 7, AcceptVerdict::lease_held, {6, 2}, "n1", 300, {3, 0xbeefULL}}}, "q_accepted");
  f(Envelope<QCommit>{s, {"roles/table", {5, 1}, rv, 200}}, "q_commit");
  f(Envelope<Challenge>{s, {std::string(16, 'x'), 99, "127.0.0.1:7401"}}, "challenge");
  f(Envelope<ChallengeAnswer>{s, {99}}, "challenge_answer");
  f(AdminRequest{1, "put", {"r", "k", "v"}}, "admin_request");
  f(AdminResponse{1, AdminStatus::ok, "{}", "{\"epoch\":1}"}, "admin_response");
}

}  // namespace rg::grid
