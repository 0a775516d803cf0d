/*
 * register.pml -- Promela model of rolegrid's role-table register
 * (CASPaxos with fast path, acceptor leases, acceptor restart/recovery)
 * and of the HA agent's operations on it. Spin 6.5.2. Run it through
 * run.sh next to this file; README.md lists the checks and their cost.
 *
 * WHAT IS MODELLED (names refer to the C++ sources)
 *  - One register (key roles/table) replicated on N members (3, or 5 with
 *    -DN=5). Every member runs an acceptor, a proposer and an agent.
 *  - Proposer (grid/quorum_proposer.cpp): ballot = (counter, node); full
 *    path: Prepare -> majority of promises -> change(value of the highest
 *    accepted ballot) -> Accept(b, v, next=(b.counter+1, self)) ->
 *    majority accepted = committed. Fast path: after a commit the proposer
 *    remembers (next, value); its next operation sends Accept(next,
 *    change(value)) at once and falls back to the full path if that round
 *    is lost (a refusal of the remembered value also falls back). Its own
 *    earlier attempt found as the highest accepted value is proposed again
 *    unchanged. see() raises the counter from refusals and accepted
 *    ballots. quorum::tally(): won / lost / pending. A round lost to
 *    leases alone ends a full-path operation as lease_held; other lost
 *    rounds back off and retry, at most MAXROUNDS full rounds.
 *    Deadline: a reply that arrives at or after the deadline (DL on the
 *    proposer's own clock since the operation started) never counts: the
 *    operation ends with no_quorum at that tick.
 *  - Acceptor (grid/quorum_acceptor.cpp): promise if b >= promised; accept
 *    if b >= promised and the lease rule allows; accepting sets promised =
 *    max(promised, b, next) and restarts its lease clock, except when
 *    another node than the value's holder writes back the value held (a
 *    read): then the clock runs on; an exact
 *    duplicate of the held (ballot, value) is answered ok, state untouched.
 *    Lease rule: while the held value's lease (LEASE on the acceptor's
 *    own clock since IT accepted) runs, refuse a value naming another
 *    holder or another epoch.
 *  - AcceptorHost (grid/acceptor_host.cpp): a restart either finds the
 *    state intact (durable mode: votes at once, lease clocks restart at
 *    load) or lost (in-memory mode, lost/corrupt data dir). Then it does
 *    not vote; asks nobody and answers nobody before WAIT on its own clock
 *    (rule 1); adopts the highest promise and highest accepted value (lease
 *    clock restarted) of recovery_threshold(N) = N-MAJ+1 other READY
 *    members (rule 2); rule 3 (only answers that echo this life's nonce
 *    count) is given: a read and its answer are one step; bootstrap: when every other member's latest answer is
 *    "recovering" or "ready, no value", it starts empty.
 *  - Agent (agent/ha_agent_*.cpp), reduced to its compare-and-sets. Table
 *    value = (master node, epoch, designated|established, hand-back flag);
 *    lease tag of an established entry (node, epoch, LEASE), of a
 *    designated one (node, epoch, 0).
 *      RENEW   acting master: {self,e,est} -> same (flag kept); committed:
 *              acts until S + LM, S = start of the operation on its own
 *              clock (lease_bound = max(...)); refused: stops acting.
 *      RESUME  not acting, the table names it established at e: taken as
 *              it is if e is this process's own epoch, or a hand-back, or
 *              this process's own earlier bump; else (an earlier process's
 *              epoch) -> {self, e+1, est}. Committed: acts from S.
 *      DESIG   failover / claim: from any entry naming another node (the
 *              failure detector is abstracted away: any node may try at
 *              any time) -> {self, e+1, designated}.
 *      ESTAB   {self,e,des} -> {self,e,est}; committed: acts from S.
 *      READ    -DAGENT_READS: any node not acting: identity (writes back the
 *              value it finds; refuses an empty register).
 *      HANDB   claim 3: {self,e,des} -> {old,e,est,hand-back}, old = the
 *              established master it designated from; old takes it with
 *              RESUME.
 *    A restart ends the process: acting stops, its designation, epoch and
 *    fast-path memory are forgotten; its ballot floor survives.
 *
 * PROPERTIES
 *  Assertions (checked at every step that starts or extends acting and at
 *  every commit a proposer learns):
 *  - no two nodes act as master at the same global time;
 *  - the committed table epoch never decreases (no commit at a higher
 *    ballot carries a lower epoch than one at a lower ballot);
 *  - at most one node is committed established, and one designated, per
 *    epoch;
 *  - a node's acting epoch never decreases (across its restarts);
 *  - -DCHECK_FENCING: a restarted process never acts at an epoch that an
 *    earlier process of the same node acted at ("an epoch never names two
 *    master processes").
 *  LTL "live" (-DLIVE, pan -a): once faults stop, some node eventually
 *  acts as master.
 *
 * ABSTRACTIONS
 *  - Time: a global tick. At each tick node i's clock advances by RATE_i
 *    units (R0..R4); leases, deadlines and waits are integer durations on
 *    a local clock, kept as counters of what remains (finite state).
 *    Safety needs max rate / min rate <= LEASE/LM = 1/(1-d). Defaults keep
 *    the code's proportions: d = 0.05 (LM = 0.95 LEASE), DL = LEASE/2 and
 *    WAIT = LEASE (grid/node.cpp), rates 19/20/20: 20/19 = 1/(1-0.05), the
 *    bound exactly. A lease then lasts 2-3 ticks, a deadline 1-2. Events
 *    between two ticks read the same clocks but happen in order.
 *  - Network. A request waits in a slot (one per proposer, acceptor) for
 *    any time while its round lasts; a new round overwrites it; when the
 *    round ends (commit, failure, deadline, restart) what is still in the
 *    slots is dropped, except requests moved before into the LATE buffer
 *    (one request, at most MAXDELAY moves per run), which
 *    are delivered at any later time or never: a late Accept, or a
 *    duplicate. Only Accepts are moved (a late Prepare only raises a
 *    promise). An acceptor's answer reaches the proposer in the same step
 *    or is lost: a delayed answer is the same as a delayed request as far
 *    as counting goes (the quorum completes when its last vote is counted);
 *    an answer to a round that is over is ignored by the proposer anyway.
 *    Recovery requests and answers have slots of their own, delivered at
 *    any time, overwritten (lost) by newer ones. Messages to self travel
 *    like any other.
 *  - Crash = restart, instantaneous (a dead period = nothing delivered
 *    meanwhile), at most MAXRESTART in a run; each one "state intact"
 *    (durable) or "state lost", nondeterministically, or as forced by
 *    -DMEMORY_ONLY / -DDURABLE_ONLY. -DNO_DOUBLE_LOSS: state may be lost
 *    only while every other member is ready.
 *  - A new process's ballots exceed its earlier life's (the code's
 *    ballot_floor = incarnation): modelled by keeping the counter.
 *  - Bounds: ballot counters <= CMAX, epochs <= EMAX, at most MAXOPS
 *    operations in flight at once, MAXROUNDS full rounds per operation. An
 *    operation that would pass a bound fails (no_quorum). The search is
 *    exhaustive within these bounds.
 *  - Not in the value: renewal counter, replica slot, maintenance, reason
 *    (except the hand-back flag). Designate may start from any entry of
 *    another node (only adds behaviours). Not modelled: QCommit and local
 *    copies, broadcasts (claim 4, vacate), hooks, switchover / release,
 *    appoint-replica, replica-self, reads (except with -DAGENT_READS and in -DLIVE), witnesses,
 *    disk write failures, membership and failure detection.
 *  - Liveness (-DLIVE): a step "stable" ends faults: no restarts, delays
 *    or duplicates after it; time advances only when no request is in
 *    flight, no retry is due, every recovering member past its wait has
 *    asked in this tick, and the node named by the highest accepted ballot
 *    (among ready acceptors) has run one operation in this tick (AUTO:
 *    resume / establish the entry that names it, else a read = identity
 *    CAS). This urgency is weak fairness plus a bound on message delay
 *    once faults stop; one operation at a time by the named node stands
 *    for the agent's stagger and randomised back-off (without them Paxos
 *    proposers may duel forever). Before "stable", ballots stop at
 *    CMAX-CRES and epochs at EMAX-ERES so that a reserve is left after it.
 *
 * PARAMETERS (-D on the spin command line)
 *  N=3 (3|5)  LEASE=40  LM=38  DL=20  WAIT=40  R0..R4=19,20,20,20,20
 *  CMAX=5  EMAX=3  MAXRESTART=2  MAXOPS=2  MAXROUNDS=2  MAXLOSS=1
 *  MAXDELAY=0  CRES=0  ERES=0  PROPOSERS=N  OPMAX (unset: no bound)
 *  MAXLOSS: Accepts whose answer is lost; PROPOSERS: nodes 0..P-1 take
 *  roles, the others only vote (witnesses); OPMAX: operations started
 *  before "stable". The default bounds are too large for an exhaustive
 *  search on this machine: run.sh picks smaller ones.
 *
 * SWITCHES
 *  PLANT_COUNT_RECOVERING  bug: recovery counts answers of recovering
 *                          peers (rule 2 off)
 *  PLANT_LATE_REPLIES      bug: replies at or after the deadline still
 *                          count; the operation ends at a later step of
 *                          its own (a proposer paused past its deadline
 *                          handles queued replies before its timer)
 *  PLANT_LEASE_FROM_COMMIT bug: the master counts its lease from the
 *                          commit instead of the operation's start
 *  PLANT_NO_WAIT           bug: no recovery wait (rule 1 off)
 *  PLANT_SAME_VALUE_KEEPS_CLOCK bug: an acceptor keeps its lease clock for
 *                          any accept of the value it holds, the holder's
 *                          own renewals (equal values here) included
 *  PLANT_STUCK_LEASE       bug: acceptor leases never run out (a lease
 *                          clock that stops); breaks liveness only
 *  CHECK_FENCING           also assert the process-level fencing claim
 *  LIVE                    liveness build ("stable", urgency, ltl live)
 *  MEMORY_ONLY DURABLE_ONLY NO_DOUBLE_LOSS   kinds of restart (above)
 *  NOHANDBACK              no hand-back operation
 *  AGENT_READS             nodes also read (identity CAS) at any time
 *  NOFASTPATH              proposers never use the fast path
 */

#ifndef N
#define N 3
#endif
#if N == 3
#define MAJ 2
#define ALLN 7
#elif N == 5
#define MAJ 3
#define ALLN 31
#else
#error "N must be 3 or 5"
#endif
#define NN (N*N)
#define RTH (N - MAJ + 1)      /* quorum::recovery_threshold(N) */
#define LOSE (N - MAJ + 1)     /* refusals that make a majority unreachable */

#ifndef LEASE
#define LEASE 40
#endif
#ifndef LM
#define LM 38                  /* LEASE * (1 - d), d = 0.05 */
#endif
#ifndef DL
#define DL 20                  /* proposer deadline */
#endif
#ifdef PLANT_NO_WAIT
#undef WAIT
#define WAIT 0
#endif
#ifndef WAIT
#define WAIT 40                /* recovery wait */
#endif
#ifndef R0
#define R0 19
#endif
#ifndef R1
#define R1 20
#endif
#ifndef R2
#define R2 20
#endif
#ifndef R3
#define R3 20
#endif
#ifndef R4
#define R4 20
#endif
#ifndef CMAX
#define CMAX 5
#endif
#ifndef EMAX
#define EMAX 3
#endif
#ifndef MAXRESTART
#define MAXRESTART 2
#endif
#ifndef MAXOPS
#define MAXOPS 2
#endif
#ifndef MAXROUNDS
#define MAXROUNDS 2
#endif
#ifndef MAXLOSS
#define MAXLOSS 1
#endif
#ifndef MAXDELAY
#define MAXDELAY 0
#endif
#ifndef CRES
#define CRES 0
#endif
#ifndef ERES
#define ERES 0
#endif
#define PELCAP LM
#if N == 3
#define RATE(i) (i == 0 -> R0 : (i == 1 -> R1 : R2))
#else
#define RATE(i) (i == 0 -> R0 : (i == 1 -> R1 : (i == 2 -> R2 : (i == 3 -> R3 : R4))))
#endif

#ifdef PLANT_LATE_REPLIES
#define PLATE 1
#else
#define PLATE 0
#endif

/* ballots: (counter c >= 1, node n) -> c*N + n; 0 = none */
#define B(c,n) ((c)*N + (n))
#define BC(b) ((b) / N)
#define BN(b) ((b) % N)

/* values: 0 = none (empty register) */
#define DES 0
#define EST 1
#define V(m,e,ph,h) (1 + (h) + 2*((ph) + 2*((m) + N*(e))))
#define VM(v) ((((v)-1)/4) % N)
#define VE(v) ((((v)-1)/4) / N)
#define VPH(v) ((((v)-1)/2) % 2)
#define VH(v) (((v)-1) % 2)
#define VLEASE(v) ((v) != 0 && VPH(v) == EST -> LEASE : 0)
#define SAMETAG(x,y) (VM(x) == VM(y) && VE(x) == VE(y))

#define BIT(i) (1 << (i))
#define POP(x) (((x)&1)+(((x)>>1)&1)+(((x)>>2)&1)+(((x)>>3)&1)+(((x)>>4)&1))

#define QPREP 1
#define QACC 2
#define V_OK 1
#define V_NO 2        /* promise refused / accept outbid */
#define V_LEASE 3
#define X_REC 1       /* recovery answer: recovering */
#define X_RDY 2       /* recovery answer: ready, with its state */

#define K_RENEW 1
#define K_RESUME 2
#define K_DESIG 3
#define K_ESTAB 4
#define K_HANDB 5
#define K_AUTO 6
#define K_READ 7
#define PH_PREP 1
#define PH_ACC 2
#define PH_BACKOFF 3
#define O_COMMIT 1
#define O_PRECOND 2
#define O_LEASE 3
#define O_NOQ 4

/* ---------------------------------------------------------------- state */
bool stable;
byte nrest, ndelay, nloss, nops;

/* acceptors */
byte aprom[N], aacc[N], aval[N], alr[N];
bool ardy[N];
byte awt[N], acnt[N], aans[N], ahold[N];
byte aasked[N];        /* -DLIVE: members read in this tick (bitmask) */
byte named;            /* -DLIVE: node named by the highest accepted ballot (a function of the state) */

/* proposers (the operation in flight, and what survives it) */
byte pk[N], pph[N], pb[N], pfirst[N], pv[N], pcur[N];
byte pyes[N], pno[N], plse[N], pbb[N], pbv[N], pel[N], prnd[N];
bool pfast[N];
byte pc[N], prn[N], prv[N];

/* agents */
byte act[N], mye[N], dese[N], deso[N], rbump[N];
bool bo[N];

/* ghosts, read only by assertions */
byte lastact[N], prevlife[N];
byte estm[EMAX+2], desm[EMAX+2];
byte maxcb, maxce;

/* network; slot index = from*N + to */
byte qt[NN], qb[NN], qv[NN];                    /* proposer -> acceptor */
byte lx, lt, lb, lv;                                    /* one late request (Accept) */

/* scratch, not part of the state (always written before read in a d_step) */
hidden byte i, j, hp, ha, hx, hv, chg, amt, hb, mt, mb, mn, mv, rk, rpm, rab, rav;
hidden byte reply;

#ifdef LIVE
#if N == 3
#define ACTING (act[0] > 0 || act[1] > 0 || act[2] > 0)
#else
#define ACTING (act[0] > 0 || act[1] > 0 || act[2] > 0 || act[3] > 0 || act[4] > 0)
#endif
ltl live { (<> stable) -> <> (stable && ACTING) }
#endif

#define CAPC (stable -> CMAX : CMAX - CRES)
#define CAPE (stable -> EMAX : EMAX - ERES)

/* ------------------------------------------------------------- helpers */
/* trail narration (spin -t): printf is not executed during verification */
mtype = { RENEW, RESUME, DESIGNATE, ESTABLISH, HANDBACK, AUTO, READ, COMMITTED, PRECONDITION_FAILED, LEASE_HELD,
          NO_QUORUM, ESTABLISHED, DESIGNATED, HAND_BACK, NONE, INTACT, LOST, READY, RECOVERING, ANSWER_LOST, ANSWERED }
#define PV(v) printf("{node %d epoch %d %e handed-back=%d}", VM(v), VE(v), (v == 0 -> NONE : (VPH(v) == EST -> ESTABLISHED : DESIGNATED)), VH(v))
#define PB(b) printf("%d.%d", BC(b), BN(b))

inline see(p, b) {
  if
  :: BC(b) > pc[p] -> pc[p] = BC(b)
  :: else
  fi
}

inline upd_named() {
#ifdef LIVE
  hb = 0; named = 0; j = 0;
  do
  :: j < N ->
     if
     :: ardy[j] && aacc[j] > hb -> hb = aacc[j]; named = (aval[j] == 0 -> 0 : VM(aval[j]))
     :: else
     fi;
     j++
  :: else -> break
  od;
  skip
#else
  skip
#endif
}

/* the agent's change function applied to cur; result in chg (0: refuses) */
inline change(p, k, cur) {
  chg = 0;
  if
  :: k == K_RENEW ->
     if
     :: cur != 0 && VM(cur) == p && VPH(cur) == EST && VE(cur) == mye[p] -> chg = cur
     :: else
     fi
  :: k == K_RESUME || (k == K_AUTO && cur != 0 && VM(cur) == p && VPH(cur) == EST) ->
     if
     :: cur != 0 && VM(cur) == p && VPH(cur) == EST ->
        if
        :: VE(cur) == mye[p] || VH(cur) == 1 || VE(cur) == rbump[p] -> chg = cur
        :: else ->
           if
           :: VE(cur) < CAPE -> chg = V(p, VE(cur) + 1, EST, 0); rbump[p] = VE(cur) + 1
           :: else
           fi
        fi
     :: else
     fi
  :: k == K_DESIG ->
     if
     :: cur == 0 -> chg = V(p, 1, DES, 0)
     :: cur != 0 && VM(cur) != p && VE(cur) < CAPE -> chg = V(p, VE(cur) + 1, DES, 0)
     :: else
     fi
  :: k == K_ESTAB || (k == K_AUTO && cur != 0 && VM(cur) == p && VPH(cur) == DES) ->
     if
     :: cur != 0 && VM(cur) == p && VPH(cur) == DES && (k == K_AUTO || VE(cur) == dese[p]) ->
        chg = V(p, VE(cur), EST, 0)
     :: else
     fi
  :: k == K_HANDB ->
     if
     :: dese[p] > 0 && deso[p] != p && cur == V(p, dese[p], DES, 0) -> chg = V(deso[p], dese[p], EST, 1)
     :: else
     fi
  :: k == K_READ -> chg = cur                        /* identity: writes back what it finds */
  :: k == K_AUTO && !(cur != 0 && VM(cur) == p) ->   /* the single candidate claims the role */
     if
     :: cur == 0 -> chg = V(p, 1, DES, 0)
     :: cur != 0 && VE(cur) < CAPE -> chg = V(p, VE(cur) + 1, DES, 0)
     :: else
     fi
  fi
}

inline clear_slot(x) {
  qt[x] = 0; qb[x] = 0; qv[x] = 0
}

/* the round of p is over: its requests still in the slots are dropped */
inline drop_requests(p) {
  i = 0;
  do
  :: i < N -> clear_slot(p*N + i); i++
  :: else -> break
  od;
  skip
}

inline clear_op(p) {
  drop_requests(p);
  pk[p] = 0; pph[p] = 0; pb[p] = 0; pfirst[p] = 0; pv[p] = 0; pcur[p] = 0;
  pyes[p] = 0; pno[p] = 0; plse[p] = 0; pbb[p] = 0; pbv[p] = 0; pel[p] = 0; prnd[p] = 0;
  pfast[p] = 0
}

/* p starts acting, or goes on acting, until amt more of its clock, at epoch e */
inline start_acting(p, e) {
  j = 0;
  do
  :: j < N ->
     assert(j == p || act[j] == 0);      /* no two masters at the same time */
     j++
  :: else -> break
  od;
  assert(e >= lastact[p]);               /* a node's acting epoch never decreases */
#ifdef CHECK_FENCING
  assert(e > prevlife[p]);               /* an epoch never names two processes */
#endif
  lastact[p] = e;
  printf("  node %d ACTS as master at epoch %d for %d more of its clock\n", p, e, amt);
  if
  :: amt > act[p] -> act[p] = amt
  :: else
  fi;
  mye[p] = e
}

/* the operation of p ends with `outcome' (commits are handled in committed) */
inline finish(p, outcome) {
  printf("  node %d op ends: %e\n", p, (outcome == O_COMMIT -> COMMITTED : (outcome == O_PRECOND -> PRECONDITION_FAILED :
         (outcome == O_LEASE -> LEASE_HELD : NO_QUORUM))));
  if
  :: outcome == O_PRECOND ->
     if
     :: pk[p] == K_RENEW -> act[p] = 0          /* demoted: stops acting at once */
     :: pk[p] == K_ESTAB || pk[p] == K_HANDB -> dese[p] = 0
     :: else
     fi
  :: else
  fi;
  clear_op(p);
  if
  :: stable -> bo[p] = 1
  :: else
  fi
}

inline send_accept(p, val) {
  see(p, B(BC(pb[p]) + 1, p));                  /* next is reserved for our fast path */
  pv[p] = val;
  pph[p] = PH_ACC;
  pyes[p] = 0; pno[p] = 0; plse[p] = 0;
  i = 0;
  do
  :: i < N -> qt[p*N + i] = QACC; qb[p*N + i] = pb[p]; qv[p*N + i] = pv[p]; i++
  :: else -> break
  od;
  skip
}

inline full_round(p) {
  pfast[p] = 0;
  if
  :: pc[p] + 1 > CAPC -> finish(p, O_NOQ)      /* model bound reached */
  :: else ->
     prnd[p]++;
     pc[p]++;
     pb[p] = B(pc[p], p);
     if
     :: pfirst[p] == 0 -> pfirst[p] = pb[p]
     :: else
     fi;
     pph[p] = PH_PREP;
     printf("  node %d Prepare ", p); PB(pb[p]); printf("\n");
     pyes[p] = 0; pno[p] = 0; plse[p] = 0; pbb[p] = 0; pbv[p] = 0;
     i = 0;
     do
     :: i < N -> qt[p*N + i] = QPREP; qb[p*N + i] = pb[p]; qv[p*N + i] = 0; i++
     :: else -> break
     od;
     skip
  fi
}

inline begin(p, k) {
  printf("node %d starts %e\n", p, (k == K_RENEW -> RENEW : (k == K_RESUME -> RESUME : (k == K_DESIG -> DESIGNATE :
         (k == K_ESTAB -> ESTABLISH : (k == K_HANDB -> HANDBACK : (k == K_READ -> READ : AUTO)))))));
#ifdef OPMAX
  if
  :: !stable -> nops++              /* operations started before "stable" */
  :: else
  fi;
#endif
  pk[p] = k; pel[p] = 0; prnd[p] = 0; pfirst[p] = 0;
#ifndef NOFASTPATH
  if
  :: prn[p] != 0 && BC(prn[p]) <= CAPC ->
     hv = prv[p]; hb = prn[p]; prn[p] = 0; prv[p] = 0;
     change(p, k, hv);
     if
     :: chg == 0 -> full_round(p)     /* a refusal of the remembered value is not trusted */
     :: else -> pfast[p] = 1; pb[p] = hb; pfirst[p] = hb; pcur[p] = hv;
        printf("  node %d fast path: Accept ", p); PB(hb); printf(" "); PV(chg); printf("\n");
        send_accept(p, chg)
     fi
  :: else -> prn[p] = 0; prv[p] = 0; full_round(p)
  fi
#else
  full_round(p)
#endif
}

inline lost_round(p) {
  if
  :: pfast[p] -> full_round(p)
  :: !pfast[p] && prnd[p] >= MAXROUNDS -> finish(p, O_NOQ)
  :: else ->
     pph[p] = PH_BACKOFF; pyes[p] = 0; pno[p] = 0; plse[p] = 0; pbb[p] = 0; pbv[p] = 0;
     drop_requests(p)
  fi
}

inline promised_majority(p) {
  if
  :: pbb[p] != 0 && BN(pbb[p]) == p && pbb[p] >= pfirst[p] ->
     send_accept(p, pbv[p])                   /* our own earlier attempt: finish it */
  :: else ->
     pcur[p] = pbv[p];
     change(p, pk[p], pbv[p]);
     if
     :: chg == 0 -> printf("  node %d: precondition failed on ", p); PV(pbv[p]); printf("\n"); finish(p, O_PRECOND)
     :: else -> printf("  node %d Accept ", p); PB(pb[p]); printf(" "); PV(chg); printf(" (from "); PV(pbv[p]); printf(")\n");
        send_accept(p, chg)
     fi
  fi
}

inline committed(p) {
  hv = pv[p];
  printf("  node %d: COMMITTED ", p); PV(hv); printf(" at "); PB(pb[p]); printf(" (op age %d)\n", pel[p]);
  /* the committed epoch never decreases */
  if
  :: pb[p] > maxcb -> assert(hv == 0 || VE(hv) >= maxce); maxcb = pb[p]; maxce = (hv == 0 -> 0 : VE(hv))
  :: pb[p] < maxcb -> assert(hv == 0 || VE(hv) <= maxce)
  :: else
  fi;
  /* at most one established / designated node per epoch */
  if
  :: hv != 0 && VPH(hv) == EST ->
     assert(estm[VE(hv)] == 0 || estm[VE(hv)] == VM(hv) + 1); estm[VE(hv)] = VM(hv) + 1
  :: hv != 0 && VPH(hv) == DES ->
     assert(desm[VE(hv)] == 0 || desm[VE(hv)] == VM(hv) + 1); desm[VE(hv)] = VM(hv) + 1
  :: else
  fi;
  prn[p] = B(BC(pb[p]) + 1, p); prv[p] = hv;
#ifdef PLANT_LEASE_FROM_COMMIT
  amt = LM;
#else
  amt = (pel[p] < LM -> LM - pel[p] : 0);       /* from S, the operation's start */
#endif
  if
  :: pk[p] == K_RENEW ->
     if
     :: act[p] > 0 && amt > 0 -> start_acting(p, VE(hv))
     :: else
     fi
  :: (pk[p] == K_RESUME || pk[p] == K_ESTAB || pk[p] == K_AUTO) && hv != 0 && VM(hv) == p && VPH(hv) == EST ->
     if
     :: amt > 0 -> start_acting(p, VE(hv))
     :: else
     fi;
     dese[p] = 0
  :: pk[p] == K_DESIG || (pk[p] == K_AUTO && hv != 0 && VM(hv) == p && VPH(hv) == DES) ->
     dese[p] = VE(hv);
     deso[p] = (pcur[p] != 0 && VPH(pcur[p]) == EST -> VM(pcur[p]) : p)
  :: pk[p] == K_HANDB -> dese[p] = 0
  :: else
  fi;
  finish(p, O_COMMIT)
}

/* proposer hp counts the answer (rk, rpm, rab, rav) of acceptor ha to (mt, mb);
   a request is delivered once with an answer, so counts are enough */
inline prop_handle() {
  if
  :: mt == QPREP ->
     if
     :: rk != V_OK -> see(hp, rpm)
     :: else
     fi;
     if
     :: rab != 0 -> see(hp, rab)
     :: else
     fi;
     if
     :: pk[hp] != 0 && pph[hp] == PH_PREP && mb == pb[hp] && (pel[hp] < DL || PLATE) ->
        if
        :: rk == V_OK ->
           pyes[hp]++;
           if
           :: rab > pbb[hp] -> pbb[hp] = rab; pbv[hp] = rav
           :: else
           fi
        :: else -> pno[hp]++
        fi;
        if
        :: pyes[hp] >= MAJ -> promised_majority(hp)
        :: pyes[hp] < MAJ && pno[hp] >= LOSE -> lost_round(hp)
        :: else
        fi
     :: else
     fi
  :: mt == QACC ->
     if
     :: rk == V_NO -> see(hp, rpm)
     :: else
     fi;
     if
     :: pk[hp] != 0 && pph[hp] == PH_ACC && mb == pb[hp] && (pel[hp] < DL || PLATE) ->
        if
        :: rk == V_OK -> pyes[hp]++
        :: rk == V_NO -> pno[hp]++
        :: rk == V_LEASE -> pno[hp]++; plse[hp]++
        fi;
        if
        :: pyes[hp] >= MAJ -> committed(hp)
        :: pyes[hp] < MAJ && pno[hp] >= LOSE ->
           if
           :: plse[hp] >= LOSE && !pfast[hp] -> finish(hp, O_LEASE)
           :: else -> lost_round(hp)
           fi
        :: else
        fi
     :: else
     fi
  fi
}

/* acceptor ha handles request (mt, mb, mn, mv) of proposer hp; if `reply',
   the answer reaches hp in the same step, else it is lost */
inline acc_handle() {
  if
  :: !ardy[ha] -> skip                       /* recovering: does not vote */
  :: ardy[ha] && mt == QPREP ->
     rpm = 0; rab = 0; rav = 0;
     if
     :: mb >= aprom[ha] -> aprom[ha] = mb; rk = V_OK; rab = aacc[ha]; rav = aval[ha];
        printf("  acceptor %d promises ", ha); PB(mb); printf(" (holds "); PV(aval[ha]); printf(")\n")
     :: else -> rk = V_NO; rpm = aprom[ha]
     fi;
     if
     :: reply -> prop_handle()
     :: else
     fi
  :: ardy[ha] && mt == QACC ->
     rpm = 0; rab = 0; rav = 0;
     if
     :: aval[ha] != 0 && aacc[ha] == mb && aval[ha] == mv -> rk = V_OK   /* duplicate */
     :: else ->
        if
        :: mb < aprom[ha] -> rk = V_NO; rpm = aprom[ha]
        :: else ->
           if
           :: alr[ha] > 0 && !SAMETAG(mv, aval[ha]) -> rk = V_LEASE;
              printf("  acceptor %d refuses ", ha); PB(mb); printf(": lease of "); PV(aval[ha]); printf(" (%d left)\n", alr[ha])
           :: else ->
              printf("  acceptor %d accepts ", ha); PB(mb); printf(" "); PV(mv); printf(" from node %d, %e\n", hp, (reply -> ANSWERED : ANSWER_LOST));
              /* the clock restarts for a new value and for every accept
                 the holder sends; the held value written back by another
                 node (a read) leaves it running */
              if
#ifdef PLANT_SAME_VALUE_KEEPS_CLOCK
              :: aval[ha] == mv -> skip
#else
              :: aval[ha] == mv && VM(mv) != hp -> skip
#endif
              :: else -> alr[ha] = VLEASE(mv)
              fi;
              aacc[ha] = mb; aval[ha] = mv;
              if
              :: mn > aprom[ha] -> aprom[ha] = mn
              :: else
              fi;
              if
              :: mb > aprom[ha] -> aprom[ha] = mb
              :: else
              fi;
              rk = V_OK;
              upd_named()
           fi
        fi
     fi;
     if
     :: reply -> prop_handle()
     :: else
     fi
  fi
}

/* an Accept's `next' is always (counter + 1, sender): not stored */
inline take_slot(x) {
  hp = x / N; ha = x % N; mt = qt[x]; mb = qb[x]; mv = qv[x]; mn = B(BC(mb) + 1, hp)
}
inline take_late() {
  hp = lx / N; ha = lx % N; mt = lt; mb = lb; mv = lv; mn = B(BC(mb) + 1, hp);
  lx = 0; lt = 0; lb = 0; lv = 0
}
inline to_late(x) {
  lx = x; lt = qt[x]; lb = qb[x]; lv = qv[x]
}

/* recovering member a asks member p and handles its answer, all in one step
   (the answer is a snapshot of p's state now) */
inline rec_read(a, p) {
  ha = a; hp = p;
  printf("  acceptor %d (recovering) reads %d: %e ", a, p, (ardy[p] -> READY : RECOVERING)); PV(aval[p]); printf("\n");
  if
  :: ardy[hp] ->                                /* QuorumAcceptor::adopt */
     if
     :: aprom[hp] > aprom[ha] -> aprom[ha] = aprom[hp]
     :: else
     fi;
     if
     :: aacc[hp] > aprom[ha] -> aprom[ha] = aacc[hp]
     :: else
     fi;
     if
     :: aval[hp] != 0 && (aval[ha] == 0 || aacc[hp] > aacc[ha]) ->
        aacc[ha] = aacc[hp]; aval[ha] = aval[hp]; alr[ha] = VLEASE(aval[hp])
     :: else
     fi;
     aans[ha] = aans[ha] | BIT(hp);
     if
     :: aval[hp] != 0 -> ahold[ha] = ahold[ha] | BIT(hp)
     :: else -> ahold[ha] = ahold[ha] & (ALLN - BIT(hp))
     fi;
     acnt[ha] = acnt[ha] | BIT(hp)
  :: else ->                                    /* "recovering" (p is past its own wait) */
#ifdef PLANT_COUNT_RECOVERING
     acnt[ha] = acnt[ha] | BIT(hp);
#endif
     aans[ha] = aans[ha] | BIT(hp); ahold[ha] = ahold[ha] & (ALLN - BIT(hp))
  fi;
  if
  :: POP(acnt[ha]) >= RTH -> ardy[ha] = 1
  :: POP(acnt[ha]) < RTH && aans[ha] == (ALLN - BIT(ha)) && ahold[ha] == 0 -> ardy[ha] = 1  /* bootstrap */
  :: else
  fi;
  if
  :: ardy[ha] -> acnt[ha] = 0; aans[ha] = 0; ahold[ha] = 0;
     printf("  acceptor %d READY with ", ha); PV(aval[ha]); printf("\n")
  :: else
  fi;
  if
  :: stable && !ardy[ha] -> aasked[ha] = aasked[ha] | BIT(hp)
  :: else -> aasked[ha] = 0
  fi;
  upd_named()
}

/* ------------------------------------------------------------ faults, time */
inline restart(r, intact) {
  printf("node %d RESTARTS, state %e\n", r, (intact && ardy[r] -> INTACT : LOST));
  if
  :: lastact[r] > prevlife[r] -> prevlife[r] = lastact[r]
  :: else
  fi;
  /* a new process: agent and proposer start afresh */
  act[r] = 0; mye[r] = 0; dese[r] = 0; deso[r] = 0; rbump[r] = 0; bo[r] = 0;
  clear_op(r);
  prn[r] = 0; prv[r] = 0;
  if
  :: intact && ardy[r] -> alr[r] = VLEASE(aval[r])   /* loaded; lease clock restarts */
  :: else ->
     aprom[r] = 0; aacc[r] = 0; aval[r] = 0; alr[r] = 0;
     ardy[r] = 0; awt[r] = WAIT;
     acnt[r] = 0; aans[r] = 0; ahold[r] = 0; aasked[r] = 0
  fi;
  nrest++;
  upd_named()
}

#define DEC(x, k) x = (x > k -> x - k : 0)

inline tick() {
  printf("-- tick (act %d %d %d, lease %d %d %d)\n", act[0], act[1], act[2], alr[0], alr[1], alr[2]);
  j = 0;
  do
  :: j < N ->
     DEC(act[j], RATE(j));
#ifndef PLANT_STUCK_LEASE
     DEC(alr[j], RATE(j));
#endif
     DEC(awt[j], RATE(j));
     if
     :: pk[j] != 0 ->
        pel[j] = (pel[j] + RATE(j) > PELCAP -> PELCAP : pel[j] + RATE(j));
#ifndef PLANT_LATE_REPLIES
        if
        :: pel[j] >= DL -> finish(j, O_NOQ)   /* deadline: no reply counts any more */
        :: else
        fi
#endif
     :: else
     fi;
     bo[j] = 0; aasked[j] = 0;
     j++
  :: else -> break
  od;
  skip
}

#if N == 3
#define FOR_N(M) M(0) M(1) M(2)
#define FOR_NN(M) M(0) M(1) M(2) M(3) M(4) M(5) M(6) M(7) M(8)
#define NBUSY ((pk[0] != 0) + (pk[1] != 0) + (pk[2] != 0))
#define NAMES_EST(p) (NE(0, p) || NE(1, p) || NE(2, p))
#define ALL_READY_BUT(r) ((r == 0 || ardy[0]) && (r == 1 || ardy[1]) && (r == 2 || ardy[2]))
#else
#define FOR_N(M) M(0) M(1) M(2) M(3) M(4)
#define FOR_NN(M) M(0) M(1) M(2) M(3) M(4) M(5) M(6) M(7) M(8) M(9) M(10) M(11) M(12) \
  M(13) M(14) M(15) M(16) M(17) M(18) M(19) M(20) M(21) M(22) M(23) M(24)
#define NBUSY ((pk[0] != 0) + (pk[1] != 0) + (pk[2] != 0) + (pk[3] != 0) + (pk[4] != 0))
#define NAMES_EST(p) (NE(0, p) || NE(1, p) || NE(2, p) || NE(3, p) || NE(4, p))
#define ALL_READY_BUT(r) ((r == 0 || ardy[0]) && (r == 1 || ardy[1]) && (r == 2 || ardy[2]) && \
  (r == 3 || ardy[3]) && (r == 4 || ardy[4]))
#endif
/* some acceptor holds an entry naming p established (else RESUME cannot succeed) */
#define NE(a, p) (aval[a] != 0 && VM(aval[a]) == p && VPH(aval[a]) == EST)

#ifdef LIVE
#define SLOTS_EMPTY(s) (s[0] == 0 && s[1] == 0 && s[2] == 0 && s[3] == 0 && s[4] == 0 && \
   s[5] == 0 && s[6] == 0 && s[7] == 0 && s[8] == 0 && (N == 3 || EMPTY5(s)))
#define EMPTY5(s) (s[NN-1] == 0 && s[NN-2] == 0 && s[NN-3] == 0 && s[NN-4] == 0 && s[NN-5] == 0 && \
   s[NN-6] == 0 && s[NN-7] == 0 && s[NN-8] == 0 && s[NN-9] == 0 && s[NN-10] == 0 && s[NN-11] == 0 && \
   s[NN-12] == 0 && s[NN-13] == 0 && s[NN-14] == 0 && s[NN-15] == 0 && s[NN-16] == 0)
#define UNANS(p) (!ardy[p] && awt[p] > 0)
#if N == 3
#define UMASK ((UNANS(0) -> 1 : 0) | (UNANS(1) -> 2 : 0) | (UNANS(2) -> 4 : 0))
#else
#define UMASK ((UNANS(0) -> 1 : 0) | (UNANS(1) -> 2 : 0) | (UNANS(2) -> 4 : 0) | (UNANS(3) -> 8 : 0) | (UNANS(4) -> 16 : 0))
#endif
/* nothing due at g: no retry, and a recovering g past its wait has read every member it can in this tick */
#define CALM(g) (pph[g] != PH_BACKOFF && (ardy[g] || awt[g] > 0 || (aasked[g] | acnt[g] | BIT(g) | UMASK) == ALLN))
#if N == 3
#define ALLCALM (CALM(0) && CALM(1) && CALM(2))
#else
#define ALLCALM (CALM(0) && CALM(1) && CALM(2) && CALM(3) && CALM(4))
#endif
/* after "stable" time moves only when nothing is urgent */
#define QUIET (lt == 0 && SLOTS_EMPTY(qt) && ALLCALM && (act[named] > 0 || pk[named] != 0 || bo[named]))
#define MAY_TICK (!stable || QUIET)
#else
#define MAY_TICK true
#endif

/* ------------------------------------------------------ the alternatives */
/* deliver a request; its answer arrives at once, or (an Accept's) is lost */
#define DELIVER_REQ(x) \
  :: d_step { qt[x] != 0 -> take_slot(x); clear_slot(x); reply = 1; acc_handle() } \
  :: d_step { qt[x] == QACC && !stable && nloss < MAXLOSS -> nloss++; take_slot(x); clear_slot(x); reply = 0; acc_handle() }
/* an Accept goes late: it may outlive its round (a duplicate delivered later
   is covered too: the duplicate-accept rule leaves state as it is) */
#define DELAY_REQ(x) \
  :: d_step { qt[x] == QACC && !stable && lt == 0 && ndelay < MAXDELAY -> ndelay++; to_late(x); clear_slot(x) }
/* a late or duplicate request is answered, but to a round that is over, or
   (a duplicate) to one that counted the original already: nobody counts it */
#define DELIVER_LATE :: d_step { lt != 0 -> take_late(); reply = 0; acc_handle() }
/* a recovering member past its wait reads another member (rule 1: a member
   answers only when ready or past its own wait); after "stable" once a tick */
#define READS(a, p) :: d_step { a != p && !ardy[a] && awt[a] == 0 && (acnt[a] & BIT(p)) == 0 && \
                               (ardy[p] || awt[p] == 0) && (aasked[a] & BIT(p)) == 0 -> rec_read(a, p) }
#if N == 3
#define READ_ALL(a) READS(a, 0) READS(a, 1) READS(a, 2)
#else
#define READ_ALL(a) READS(a, 0) READS(a, 1) READS(a, 2) READS(a, 3) READS(a, 4)
#endif

#ifndef PROPOSERS
#define PROPOSERS N            /* nodes 0 .. PROPOSERS-1 take roles; the others are witnesses */
#endif
#ifdef OPMAX
#define OPS_LEFT (nops < OPMAX)
#else
#define OPS_LEFT true
#endif
#define IDLE(p) (p < PROPOSERS && pk[p] == 0 && !stable && NBUSY < MAXOPS && OPS_LEFT)
#ifdef AGENT_READS
#define AGENT_READ(p) \
  :: d_step { IDLE(p) && act[p] == 0 -> begin(p, K_READ) }
#else
#define AGENT_READ(p)
#endif
#ifdef NOHANDBACK
#define HANDBACK(p)
#else
#define HANDBACK(p) \
  :: d_step { IDLE(p) && act[p] == 0 && dese[p] != 0 && deso[p] != p -> begin(p, K_HANDB) }
#endif
#define STARTS(p) \
  :: d_step { IDLE(p) && act[p] > 0 -> begin(p, K_RENEW) } \
  :: d_step { IDLE(p) && act[p] == 0 && dese[p] == 0 && NAMES_EST(p) -> begin(p, K_RESUME) } \
  :: d_step { IDLE(p) && act[p] == 0 && dese[p] == 0 -> begin(p, K_DESIG) } \
  :: d_step { IDLE(p) && act[p] == 0 && dese[p] != 0 -> begin(p, K_ESTAB) } \
  HANDBACK(p) \
  :: d_step { pph[p] == PH_BACKOFF -> full_round(p) } \
  AGENT_READ(p) \
  READ_ALL(p)

#ifdef LIVE
#define STARTS_LIVE(p) \
  :: d_step { stable && named == p && pk[p] == 0 && act[p] == 0 && !bo[p] -> begin(p, K_AUTO) }
#else
#define STARTS_LIVE(p)
#endif

#ifdef PLANT_LATE_REPLIES
#define NOTICE(p) :: d_step { pk[p] != 0 && pel[p] >= DL -> finish(p, O_NOQ) }
#else
#define NOTICE(p)
#endif

#ifdef NO_DOUBLE_LOSS
#define LOSS_OK(r) ALL_READY_BUT(r)
#else
#define LOSS_OK(r) true
#endif
#if defined(MEMORY_ONLY)
#define RESTARTS(r) :: d_step { !stable && nrest < MAXRESTART && LOSS_OK(r) -> restart(r, 0) }
#elif defined(DURABLE_ONLY)
#define RESTARTS(r) :: d_step { !stable && nrest < MAXRESTART -> restart(r, 1) }
#else
#define RESTARTS(r) \
  :: d_step { !stable && nrest < MAXRESTART && ardy[r] -> restart(r, 1) } \
  :: d_step { !stable && nrest < MAXRESTART && LOSS_OK(r) -> restart(r, 0) }
#endif

#define NODE(p) STARTS(p) STARTS_LIVE(p) NOTICE(p) RESTARTS(p)

active proctype world()
{
  d_step {
    /* node 0 is the established master of epoch 1; its renewal at ballot
       (1,0) was just accepted everywhere (and next = (2,0) promised) */
    j = 0;
    do
    :: j < N ->
       aprom[j] = B(2, 0); aacc[j] = B(1, 0); aval[j] = V(0, 1, EST, 0);
       alr[j] = LEASE; ardy[j] = 1; pc[j] = 2;
       j++
    :: else -> break
    od;
    act[0] = LM; mye[0] = 1; lastact[0] = 1;
    prn[0] = B(2, 0); prv[0] = V(0, 1, EST, 0);
    estm[1] = 1; maxcb = B(1, 0); maxce = 1;
    upd_named()
  };
  do
  :: d_step { MAY_TICK -> tick() }
#ifdef LIVE
  :: d_step { !stable && NBUSY == 0 && lt == 0 -> stable = 1; printf("== stable: faults stop\n") }
#endif
  FOR_NN(DELIVER_REQ)
  FOR_NN(DELAY_REQ)
  DELIVER_LATE
  FOR_N(NODE)
  od
}
