/*
 * The Spin model of issue 14's membership change (docs/DESIGN.md,
 * "Changing the members"; the code is grid/member_change.cpp). It checks
 * the protocol: single-server changes of the members, register
 * messages tagged with the sender's configuration version, acceptors that
 * refuse lower tags, and the settle steps (fence, catch-up) before the next
 * change.
 *
 * Modelled: one register key (the role table) changed by compare-and-set
 * increments in the style of CASPaxos (prepare: promises from a majority of
 * the proposer's configuration, the highest accepted value; accept: the
 * value + 1 at a majority of it). NP proposers, each on the configuration it
 * last learned: by default node 0 learns the latest committed one at the
 * start of each operation and node 1 never learns (it stays on CFG0, the
 * node that learns late); with -DANY_ADOPTION each may adopt the latest or
 * stay behind at the start of any operation (a larger search, not run to
 * the end here). Every
 * message to an acceptor is an atomic step that may also never happen (a
 * lost message), in any order with every other step. A changer grows the
 * members one at a time, CFG0 -> CFG1 -> CFG2, committing each change and
 * then settling it: the fence (a request tagged with the new version that a
 * majority of the new configuration answers) and the catch-up (a read that
 * writes back what it finds, through a majority of the new configuration,
 * tagged with the new version).
 *
 * Checked: no value of the increments is committed by two ballots (an
 * update that did not see the one before it: two masters at one epoch
 * follow from it).
 *
 * Abstracted: the change's own compare-and-set of `cluster/members` (one
 * changer; the register serializes changes, as it serializes any value);
 * leases (a lease is held by the values an acceptor accepted, which the
 * catch-up carries over); acceptor restarts; the fast path.
 *
 * STATUS (2026-12-05, second version): growing and shrinking are proven
 * within these bounds, and both plants are caught either way. Bounds (the
 * -D defaults): 2 proposers with one operation each (OPMAX=1, CMAX=1), the
 * changer with CUMAX=2 catch-up attempts (one per change, no retry).
 * Built with -DCOLLAPSE (every state stored exactly, compressed), -w28:
 *   unplanted (grow): complete, 0 errors: 227.5 M states, depth 176,
 *     10.8 GB, 234 s (tests/model/run.sh, reconfig-grow).
 *   -DPLANT_NO_FENCE   caught: 10.0 M states, depth 185, 6 s, 1.1 GB. The
 *     changer fences CFG1 and CFG2 at {0,1,2} and its CFG1 catch-up writes
 *     back 0 at {0,1,2,3}; node 0 (on CFG2, ballot 5) promises at {2,3,4},
 *     reads 0 and accepts 1 at 2; the stale node 1 (on CFG0, ballot 6)
 *     promises at {0,1}, accepts 1 at 1 and 2 (overwriting ballot 5) and
 *     commits 1; node 0's accepts at 3 and 4 commit 1 again with {2,3,4}:
 *     an old majority and a new one that do not meet.
 *   -DPLANT_NO_CATCHUP caught: 1.0 M states, depth 125, 1 s. Node 1 (CFG0,
 *     ballot 6) promises at {0,1} and accepts 1 at 0; both fences miss
 *     node 1, which then accepts 1: committed in CFG0 at {0,1}. Node 0 on
 *     CFG2 (ballot 5) reads {2,3,4}, which never saw 1, and commits 1 again.
 *     A catch-up would have read 1 at 0 and written it back.
 *   -DSHRINK with either plant: caught (2.0 M and 1.3 M states).
 *   -DSHRINK unplanted: complete, 0 errors: 373.0 M states, depth 176,
 *     16.4 GB, 407 s (run.sh --deep, reconfig-shrink: too big for CI).
 * One proposer only (-DNP=1) finishes in 15.0 M states but shows nothing
 * (no plant is reachable with one operation).
 * The first version (141 M states, no plant found to depth 100) is
 * replaced by the reductions below.
 *
 * Reductions (each keeps every violation of the assertion reachable):
 *   - The fence is one step to one smallest majority. Its messages only
 *     raise cfg_seen, and a raised cfg_seen only turns later messages into
 *     refusals, which have the effect of a lost message; a fence that
 *     reaches more acceptors, or reaches them earlier than its last answer,
 *     allows only fewer runs.
 *   - A prepare asks exactly one smallest majority (one step per message,
 *     in node order) or fails with no effect. A failed prepare's promises
 *     only refuse others (lost messages again); a prepare answered by a
 *     larger set S is matched by the smallest majority in S holding S's
 *     highest accepted ballot: same value read, fewer refusals.
 *   - Each message is one d_step and the scratch variables are reset after
 *     each phase, so no intermediate or scratch-only states are stored.
 *   - Ballot ids: the changer 0, node p p + 1 (any order of ids is a real
 *     one); with the changer lowest both plants need one operation each.
 *   - Accepts are not reduced: any of them may be lost (partial writes
 *     matter).
 *
 * Switches:
 *   -DPLANT_NO_FENCE    acceptors answer messages with any tag
 *   -DPLANT_NO_CATCHUP  a change is settled by the fence alone
 *   -DSHRINK            the changer shrinks instead: CFG0 = 5 members, then 4, then 3
 *   -DANY_ADOPTION      any proposer may adopt the latest configuration or stay behind
 *   -DNP, -DOPMAX, -DCMAX, -DCUMAX  the bounds above
 * Run: spin -a FLAGS reconfig.pml && gcc -O1 -w -DSAFETY -DCOLLAPSE -DMEMLIM=14000 -o pan pan.c
 *      && ./pan -m100000 -w28   (tests/model/run.sh runs the CI set)
 */

#define N 5            /* nodes 0..4 */
#ifndef NP
#define NP 2           /* proposers on nodes 0 and 1 (ballot ids 1, 2); the changer runs on node 2 (ballot id 0) */
#endif
#ifndef OPMAX
#define OPMAX 1        /* operations per proposer */
#endif
#ifndef CMAX
#define CMAX 1         /* a proposer's ballot counters 1..CMAX */
#endif
#ifndef CUMAX
#define CUMAX 2        /* the changer's catch-up attempts, over both changes */
#endif
#define NV 3           /* configurations 0..2 */

/* Ballot ids: the changer 0, proposer p p + 1. */
#define BALLOT(c, id) ((c) * 4 + (id))
#define NOBALLOT 0

/* Members of each configuration as bit masks of nodes. */
#ifdef SHRINK
#define CFG0 31  /* {0,1,2,3,4} */
#define CFG1 15  /* {0,1,2,3} */
#define CFG2 7   /* {0,1,2} */
#else
#define CFG0 7   /* {0,1,2} */
#define CFG1 15  /* {0,1,2,3} */
#define CFG2 31  /* {0,1,2,3,4} */
#endif

byte cfg[NV];
hidden byte _st;   /* written and read inside one d_step only: pan does not
                      restore hidden variables when it backtracks */
byte committed_v = 0;   /* the highest configuration committed */
byte last_value = 0;    /* the highest value committed */
byte committed_by[8];   /* the ballot that committed each value of an increment */

/* Acceptors. */
byte promised[N];
byte acc_ballot[N];
byte acc_value[N];
byte cfg_seen[N];

#define BIT(m, i) (((m) >> (i)) & 1)
#define POP(m) (BIT(m, 0) + BIT(m, 1) + BIT(m, 2) + BIT(m, 3) + BIT(m, 4))
/* A majority of configuration `v` among the nodes in `set`. */
#define MAJ(v, set) (POP((set) & cfg[v]) * 2 > POP(cfg[v]))

/* The acceptor's refusal of a stale tag; every message raises cfg_seen. */
inline stale(a, tag, out) {
#ifdef PLANT_NO_FENCE
  out = false;
#else
  out = (tag < cfg_seen[a]);
#endif
  if :: tag > cfg_seen[a] -> cfg_seen[a] = tag :: else -> skip fi
}

/* An increment that commits a value another ballot already committed did
   not see that commit: an update lost (two masters at one epoch follow).
   (Commits are learned in any order: an operation may finish after a later
   one that read its value, so the check is per value, not on the order.) */
inline commit(v, identity, b) {
  if
  :: !identity -> assert(committed_by[v] == 0 || committed_by[v] == b); committed_by[v] = b
  :: else -> skip
  fi;
  if :: v > last_value -> last_value = v :: else -> skip fi
}

/*
 * One compare-and-set on the key by node `me` on configuration `pv`,
 * tagged `pv`: an increment, or an identity (a read that writes back).
 * Gives up at any point (lost messages, deadline).
 */
/* The smallest majority of configuration v, and its members after node a. */
#define NEED(v) (POP(cfg[v]) / 2 + 1)
#define AFTER(v, a) (cfg[v] & ~((2 << (a)) - 1))
/* Move _a to the next member of cfg[pv] (N if none), or to the first
   from _a on: inside a d_step. */
inline next_member(pv) {
  _a++;
  first_member(pv)
}
inline first_member(pv) {
  do
  :: _a < N && !BIT(cfg[pv], _a) -> _a++
  :: else -> break
  od;
  skip
}

inline operation(me, pv, identity, counter, done) {
  done = false;
  counter++;
  if
  :: skip
  :: goto gaveup     /* the prepare fails with no effect (all lost or refused) */
  fi;
  /* prepare: one step per member of cfg[pv] in the order of the nodes;
     the promises asked for are exactly one smallest majority (see the
     header for why no other sets need to be tried). */
  d_step { _a = 0; first_member(pv) }
  do
  :: _a < N && POP(_promises) < NEED(pv) ->
     d_step {
       stale(_a, pv, _st);
       if
       :: !_st && BALLOT(counter, me) > promised[_a] ->
          promised[_a] = BALLOT(counter, me);
          _promises = _promises | (1 << _a);
          if
          :: acc_ballot[_a] > _best_b -> _best_b = acc_ballot[_a]; _best_v = acc_value[_a]
          :: else -> skip
          fi
       :: else -> skip
       fi;
       next_member(pv)
     }
  :: _a < N && POP(_promises | AFTER(pv, _a)) >= NEED(pv) ->
     d_step { next_member(pv) }  /* not asked */
  :: _a >= N -> break
  od;
  if
  :: POP(_promises) >= NEED(pv) -> skip
  :: else -> goto gaveup   /* refused: the deadline passes */
  fi;
  d_step {
    if :: identity -> _val = _best_v :: else -> _val = _best_v + 1 fi;
    _promises = 0; _best_b = 0; _best_v = 0;
    _a = 0; first_member(pv)
  }
  /* accept: one step per member, each delivered or lost */
  do
  :: _a < N ->
     d_step {
       stale(_a, pv, _st);
       if
       :: !_st && BALLOT(counter, me) >= promised[_a] ->
          promised[_a] = BALLOT(counter, me);
          acc_ballot[_a] = BALLOT(counter, me);
          acc_value[_a] = _val;
          _accepts = _accepts | (1 << _a);
          if
          :: POP(_accepts) >= NEED(pv) && !done -> commit(_val, identity, BALLOT(counter, me)); done = true
          :: else -> skip
          fi
       :: else -> skip
       fi;
       next_member(pv)
     }
  :: _a < N -> d_step { next_member(pv) }   /* lost */
  :: _a >= N -> break
  od;
gaveup:
  skip;
  /* the scratch variables back to 0: states that differ only in them are one */
  d_step { _a = 0; _promises = 0; _accepts = 0; _best_b = 0; _best_v = 0; _val = 0 }
}

proctype Proposer(byte me) {
  byte ops = 0, pv = 0, counter = 0;
  bool done;
  byte _promises, _accepts, _best_b, _best_v, _val, _a;
  do
  :: ops < OPMAX && counter < CMAX ->
#ifdef ANY_ADOPTION
     if
     :: pv < committed_v -> pv = committed_v   /* learns the latest */
     :: true -> skip                           /* or stays behind */
     fi;
#else
     /* Node 0 always learns the latest committed configuration; node 1
        never does (a node that learns late stays on CFG0). */
     if :: me == 0 -> pv = committed_v :: else -> skip fi;
#endif
     operation(me + 1, pv, false, counter, done);
     ops++
  :: else -> break
  od
}

/* Grows (or shrinks) the members one at a time, settling each change. */
proctype Changer() {
  byte v = 0, counter = 0;
  bool settled;
  byte _m, _c;
  byte _promises, _accepts, _best_b, _best_v, _val, _a;
  do
  :: v + 1 < NV ->
     /* The change commits through a majority of cfg[v] (abstracted). */
     committed_v = v + 1;
     v = v + 1;
     /* Fence: a request tagged v that a majority of cfg[v] answers, as one
        step to one smallest majority (see the header: sound). */
     atomic {
       _m = 0; _c = 0;
       do
       :: _c < N ->
          if
          :: BIT(cfg[v], _c) && POP(_m) * 2 <= POP(cfg[v]) ->
             _m = _m | (1 << _c);               /* answers */
             if :: v > cfg_seen[_c] -> cfg_seen[_c] = v :: else -> skip fi
          :: !BIT(cfg[v], _c) || POP(_m | (cfg[v] & ~((2 << _c) - 1))) * 2 > POP(cfg[v]) ->
             skip                               /* lost: the others still make a majority */
          fi;
          _c++
       :: else -> break
       od;
       _m = 0; _c = 0
     }
#ifndef PLANT_NO_CATCHUP
     /* Catch-up: a read that writes back what it finds, through a
        majority of cfg[v]; until one commits, no next change. */
     settled = false;
     do
     :: !settled && counter < CUMAX -> operation(0, v, true, counter, settled)
     :: settled -> break
     :: !settled && counter >= CUMAX -> goto stop
     od;
#endif
     skip
  :: else -> break
  od;
stop:
  skip
}

init {
  cfg[0] = CFG0; cfg[1] = CFG1; cfg[2] = CFG2;
  atomic {
    byte p = 0;
    do
    :: p < NP -> run Proposer(p); p++
    :: else -> break
    od;
    run Changer()
  }
}
