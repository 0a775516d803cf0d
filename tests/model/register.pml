/*
 * register.pml -- Promela model of rolegrid's role-table register
 * (CASPaxos with fast path, acceptor leases, acceptor restart/recovery)
 * and of the HA agent's operations on it, checked with Spin 6.5.2.
 * Run it through run.sh (next to this file); README.md says what each
 * check covers and what it costs.
 *
 * WHAT IS MODELLED (names refer to the C++ sources)
 *  - One register (key roles/table) replicated on N members (3, or 5 with
 *    -DN=5). Every member runs an acceptor, a proposer and an agent.
 *  - Proposer (grid/quorum_proposer.cpp): ballots (counter, node); full
 *    path Prepare -> majority of promises -> change(value with highest
 *    accepted ballot) -> Accept(b, v, next=(b.counter+1, self)) ->
 *    majority accepted = committed; fast path: after a commit the
 *    proposer remembers (next, value) and its next operation sends
 *    Accept(next, change(value)) directly, falling back to the full path
 *    if that loses; "our own earlier attempt" is re-proposed unchanged;
 *    see() raises the counter from refusals; quorum::tally() (won / lost /
 *    pending); a lease refusal alone ends a full round as lease_held;
 *    other lost rounds back off and retry (at most MAXROUNDS rounds).
 *    Deadline: a reply that arrives at or after the operation's deadline
 *    (DL on the proposer's own clock from the operation's start) never
 *    counts: the operation ends with no_quorum at that tick.
 *  - Acceptor (grid/quorum_acceptor.cpp): promise if b >= promised; accept
 *    if b >= promised and the lease rule allows it; accepting sets
 *    promised = max(promised, b, next) and restarts the lease clock; an
 *    exact duplicate of the held (ballot, value) is answered ok without
 *    touching state. Lease rule: while the held value's lease (LEASE on
 *    the acceptor's own clock since IT accepted) runs, refuse any value
 *    naming another holder or another epoch.
 *  - AcceptorHost (grid/acceptor_host.cpp): a restart either keeps the
 *    state intact (durable mode: votes at once, lease clocks restart at
 *    load) or loses it (in-memory mode, lost/corrupt data dir): then the
 *    acceptor does not vote; it asks nobody and answers nobody before WAIT
 *    on its own clock (rule 1); adopts max promise / highest accepted
 *    value (lease clock restarted) from recovery_threshold(N) = N-MAJ+1
 *    other READY members (rule 2); counts only answers that echo this
 *    life's nonce (rule 3); bootstrap: every other member's latest answer
 *    is "recovering" or "ready, no value" -> start empty.
 *  - Agent (agent/ha_agent_*.cpp), simplified. Table value = (master node,
 *    epoch, phase designated|established, "hand-back" flag); the lease tag
 *    of an established entry is (node, epoch, LEASE), of a designated one
 *    (node, epoch, 0). Operations, each a CAS on the register:
 *      RENEW   acting master: {self,e,est} -> same (flag kept);
 *              committed -> acts until S + LM (S = start of the op,
 *              own clock); refused -> stops acting.
 *      RESUME  not acting, table names self established at e: if e is this
 *              process's own epoch, or the entry is a hand-back, or it is
 *              this process's own earlier bump: take it as it is; otherwise
 *              (an earlier process's epoch) -> {self, e+1, est}.
 *              committed -> acts from S.
 *      DESIG   failover/claim: from any entry naming another node (the
 *              failure detector is abstracted: a node may try at any
 *              time) -> {self, e+1, designated}.
 *      ESTAB   {self,e,des} -> {self,e,est}; committed -> acts from S.
 *      HANDB   claim 3: {self,e,des} -> {old,e,est,hand-back} where old is
 *              the established master it designated from; old takes it
 *              with RESUME.
 *    A restarted process forgets everything (epoch, designation, the
 *    fast-path memory); only its ballot counter floor survives.
 *
 * PROPERTIES (assertions, checked at every step that starts or extends
 * acting, and at every commit a proposer learns)
 *  - no two nodes act as master at the same global time;
 *  - the committed table epoch never decreases (a commit at a higher
 *    ballot never carries a lower epoch than one at a lower ballot);
 *  - at most one node committed established (and one designated) per epoch;
 *  - each node's acting epoch never decreases (across its restarts);
 *  - with -DCHECK_FENCING also: a restarted process never acts at an epoch
 *    an earlier process of the same node acted at (the design's "an epoch
 *    never names two master processes");
 *  - liveness (-DLIVE, ltl "live", pan -a): once faults stop, some node
 *    eventually acts as master.
 *
 * ABSTRACTIONS
 *  - Time: a global tick; at each tick node i's clock advances by RATE_i
 *    units (R0..R4). Leases, deadlines and waits are integer durations on
 *    the local clock, kept as "remaining" counters (so the state is
 *    finite). Safety needs RATE_max/RATE_min <= LEASE/LM = 1/(1-d). The
 *    defaults keep the code's proportions: d = 0.05 (LM = LEASE*(1-d)),
 *    DL = LEASE/2 (node.cpp), WAIT = LEASE (node.cpp), rates 19/20/20
 *    (ratio 20/19 = 1/(1-0.05), exactly at the bound). A lease lasts 2-3
 *    ticks, a deadline 1-2 ticks. Events between two ticks happen at the
 *    same clock readings but in order.
 *  - Network: one slot per (sender, receiver, message kind). A message
 *    waits in its slot for any time (arbitrary delay, reordering across
 *    slots); a newer message on the same slot overwrites it (loss); a
 *    message never delivered is lost; up to MAXDUP request deliveries keep
 *    the message (duplication / the proposer's resends). Messages to self
 *    travel like any other.
 *  - Crash = restart, instantaneous (a dead period = messages not
 *    delivered meanwhile), at most MAXRESTART in total, each one
 *    nondeterministically "state intact" (durable) or "state lost".
 *    -DMEMORY_ONLY / -DDURABLE_ONLY force one kind. -DNO_DOUBLE_LOSS
 *    allows losing state only while every other member is ready (a
 *    majority never loses state at once).
 *  - A new process's ballots exceed its earlier life's (the code's
 *    ballot_floor = incarnation): modelled by keeping the counter.
 *  - Bounded: ballot counters <= CMAX, epochs <= EMAX, MAXROUNDS full
 *    rounds per operation. An operation that would exceed a bound fails
 *    (no_quorum). So the check is exhaustive up to these bounds.
 *  - The value has no renewal counter, replica slot, maintenance flag or
 *    reason text (only the hand-back flag): designate is allowed from any
 *    entry of another node, which only adds behaviours. Not modelled:
 *    QCommit/local copies, broadcast and acknowledgements (claim 4,
 *    vacate), prepare hooks, switchover/release, appoint-replica,
 *    replica-self, reads, witnesses, disk write failures, membership.
 *  - Liveness (-DLIVE): after the nondeterministic step "stable" there are
 *    no restarts and no duplicates; time advances only when no message is
 *    in flight, no retry is due, every recovering member past its wait has
 *    asked in this tick, and the node named by the latest accepted value
 *    has run its operation in this tick (AUTO: resume/establish what names
 *    it, else a read = identity CAS). This urgency encodes weak fairness
 *    and a bounded message delay after faults stop, plus one operation at
 *    a time by the named node (abstracting the agent's stagger and
 *    randomised back-off, without which Paxos proposers can duel forever).
 *    Before "stable" ballots are limited to CMAX-CRES and epochs to
 *    EMAX-ERES so the reserve is there after it.
 *
 * PARAMETERS (-D on the spin command line; defaults below)
 *  N=3 (3 or 5), LEASE=40, LM=38, DL=20, WAIT=40, R0..R4 (19,20,20,20,20),
 *  CMAX=5, EMAX=3, MAXRESTART=2, MAXDUP=1, MAXROUNDS=2, CRES=0, ERES=0.
 *
 * SWITCHES
 *  PLANT_COUNT_RECOVERING  planted bug: recovery counts answers of
 *                          recovering peers (rule 2 off)
 *  PLANT_LATE_REPLIES      planted bug: a reply at or after the deadline
 *                          still counts (the op ends at some later step,
 *                          like a proposer paused past its deadline)
 *  PLANT_LEASE_FROM_COMMIT planted bug: the master counts its lease from
 *                          the commit instead of the operation's start
 *  PLANT_NO_WAIT           planted bug: no recovery wait (rule 1 off)
 *  PLANT_NO_NONCE          planted bug: answers to an earlier life's
 *                          recovery request count (rule 3 off)
 *  CHECK_FENCING           also assert the process-level fencing claim
 *  LIVE                    liveness build (stable step, urgency, ltl live)
 *  MEMORY_ONLY, DURABLE_ONLY, NO_DOUBLE_LOSS   restart kinds (above)
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
#ifndef MAXDUP
#define MAXDUP 1
#endif
#ifndef MAXOPS
#define MAXOPS 2
#endif
#ifndef MAXROUNDS
#define MAXROUNDS 2
#endif
#ifndef CRES
#define CRES 0
#endif
#ifndef ERES
#define ERES 0
#endif
#define PELCAP LM
#ifdef PLANT_NO_NONCE
#define NONCE_OFF 1
#else
#define NONCE_OFF 0
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

/* message kinds */
#define QPREP 1
#define QACC 2
#define RPROM 1
#define RACC 2
#define V_OK 1
#define V_NO 2        /* promise refused / accept outbid */
#define V_LEASE 3
#define X_REC 1       /* recovery answer: recovering */
#define X_RDY 2       /* recovery answer: ready, with state */

/* operation kinds and phases */
#define K_RENEW 1
#define K_RESUME 2
#define K_DESIG 3
#define K_ESTAB 4
#define K_HANDB 5
#define K_AUTO 6
#define PH_PREP 1
#define PH_ACC 2
#define PH_BACKOFF 3
#define O_COMMIT 1
#define O_PRECOND 2
#define O_LEASE 3
#define O_NOQ 4

/* ---------------------------------------------------------------- state */
byte rate[N];
bool stable;
byte nrest, ndup;

/* acceptors */
byte aprom[N], aacc[N], aval[N], alr[N];
bool ardy[N];
byte awt[N], alife[N], acnt[N], aans[N], ahold[N];
bool aasked[N];
byte named;            /* LIVE: node named by the highest accepted ballot (function of state) */

/* proposers */
byte pk[N], pph[N], pb[N], pnx[N], pfirst[N], pv[N], pcur[N];
byte pyes[N], pno[N], plse[N], pbb[N], pbv[N], pel[N], prnd[N];
bool pfast[N];
byte pc[N], prn[N], prv[N];

/* agents */
byte act[N], mye[N], dese[N], deso[N], rbump[N];
bool bo[N];

/* ghosts (only read by assertions) */
byte lastact[N], prevlife[N];
byte estm[EMAX+2], desm[EMAX+2];
byte maxcb, maxce;

/* network, slot index = from*N + to */
byte qt[NN], qb[NN], qn[NN], qv[NN];               /* proposer -> acceptor */
byte rt[NN], rb[NN], rk[NN], rpm[NN], rab[NN], rav[NN]; /* acceptor -> proposer */
byte xq[NN];                                       /* recovery request: nonce */
byte xt[NN], xn[NN], xpm[NN], xab[NN], xav[NN];    /* recovery answer */

/* scratch, not part of the state (always written before read in a d_step) */
hidden byte i, j, hp, ha, hx, hv, chg, amt, hb;

#ifdef LIVE
#define ACTING (act[0] > 0 || act[1] > 0 || act[2] > 0 || (N > 3 && (act[N-2] > 0 || act[N-1] > 0)))
ltl live { (<> stable) -> <> (stable && ACTING) }
#endif

#define CAPC (stable -> CMAX : CMAX - CRES)
#define CAPE (stable -> EMAX : EMAX - ERES)

/* ------------------------------------------------------------- helpers */
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
     :: ardy[j] && aacc[j] > hb -> hb = aacc[j];
        named = (aval[j] == 0 -> 0 : VM(aval[j]))
     :: else
     fi;
     j++
  :: else -> break
  od;
  skip   /* a break must not leave the d_step */
#else
  skip
#endif
}

/* the agent's change function; result in chg (0: refuse) */
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
  :: k == K_AUTO && !(cur != 0 && VM(cur) == p) ->   /* a read; claim of an empty register */
     chg = (cur == 0 -> V(p, 1, DES, 0) : cur)
  fi
}

/* replies still on their way to p's finished round are dropped (= lost) */
inline drop_replies(p) {
  i = 0;
  do
  :: i < N -> hx = i*N + p; rt[hx] = 0; rb[hx] = 0; rk[hx] = 0; rpm[hx] = 0; rab[hx] = 0; rav[hx] = 0; i++
  :: else -> break
  od;
  skip
}

inline clear_op(p) {
  drop_replies(p);
  pk[p] = 0; pph[p] = 0; pb[p] = 0; pnx[p] = 0; pfirst[p] = 0; pv[p] = 0; pcur[p] = 0;
  pyes[p] = 0; pno[p] = 0; plse[p] = 0; pbb[p] = 0; pbv[p] = 0; pel[p] = 0; prnd[p] = 0;
  pfast[p] = 0
}

/* acting starts or is extended to amt (local units) at epoch e */
inline start_acting(p, e) {
  j = 0;
  do
  :: j < N ->
     assert(j == p || act[j] == 0);   /* no two masters at the same time */
     j++
  :: else -> break
  od;
  assert(e >= lastact[p]);            /* a node's acting epoch never decreases */
#ifdef CHECK_FENCING
  assert(e > prevlife[p]);            /* an epoch never names two processes */
#endif
  lastact[p] = e;
  if
  :: amt > act[p] -> act[p] = amt
  :: else
  fi;
  mye[p] = e
}

/* outcome of the operation of p, then the operation ends */
inline finish(p, outcome) {
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

inline send_prepares(p) {
  drop_replies(p);
  i = 0;
  do
  :: i < N -> qt[p*N + i] = QPREP; qb[p*N + i] = pb[p]; qn[p*N + i] = 0; qv[p*N + i] = 0; i++
  :: else -> break
  od;
  skip   /* a break must not leave the d_step */
}

inline send_accept(p, val) {
  pnx[p] = B(BC(pb[p]) + 1, p);
  see(p, pnx[p]);
  pv[p] = val;
  pph[p] = PH_ACC;
  pyes[p] = 0; pno[p] = 0; plse[p] = 0;
  drop_replies(p);
  i = 0;
  do
  :: i < N -> qt[p*N + i] = QACC; qb[p*N + i] = pb[p]; qn[p*N + i] = pnx[p]; qv[p*N + i] = pv[p]; i++
  :: else -> break
  od;
  skip   /* a break must not leave the d_step */
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
     pyes[p] = 0; pno[p] = 0; plse[p] = 0; pbb[p] = 0; pbv[p] = 0;
     send_prepares(p)
  fi
}

inline begin(p, k) {
  pk[p] = k; pel[p] = 0; prnd[p] = 0; pfirst[p] = 0;
#ifndef NOFASTPATH
  if
  :: prn[p] != 0 && BC(prn[p]) <= CAPC ->
     hv = prv[p]; hb = prn[p]; prn[p] = 0; prv[p] = 0;
     change(p, k, hv);
     if
     :: chg == 0 -> full_round(p)
     :: else -> pfast[p] = 1; pb[p] = hb; pfirst[p] = hb; pcur[p] = hv; send_accept(p, chg)
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
  :: else -> pph[p] = PH_BACKOFF; pyes[p] = 0; pno[p] = 0; plse[p] = 0; pbb[p] = 0; pbv[p] = 0
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
     :: chg == 0 -> finish(p, O_PRECOND)
     :: else -> send_accept(p, chg)
     fi
  fi
}

inline committed(p) {
  hv = pv[p];
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
  prn[p] = pnx[p]; prv[p] = hv;
#ifdef PLANT_LEASE_FROM_COMMIT
  amt = LM;
#else
  amt = (pel[p] < LM -> LM - pel[p] : 0);
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

/* -------------------------------------------------------- message steps */
/* acceptor `to' handles the request in slot idx (from proposer idx / N) */
inline acc_handle(idx) {
  hp = idx / N; ha = idx % N; hx = ha*N + hp;
  if
  :: !ardy[ha] -> skip                       /* recovering: does not vote */
  :: ardy[ha] && qt[idx] == QPREP ->
     rt[hx] = RPROM; rb[hx] = qb[idx];
     if
     :: qb[idx] >= aprom[ha] ->
        aprom[ha] = qb[idx];
        rk[hx] = V_OK; rpm[hx] = 0; rab[hx] = aacc[ha]; rav[hx] = aval[ha]
     :: else ->
        rk[hx] = V_NO; rpm[hx] = aprom[ha]; rab[hx] = 0; rav[hx] = 0
     fi
  :: ardy[ha] && qt[idx] == QACC ->
     rt[hx] = RACC; rb[hx] = qb[idx]; rab[hx] = 0; rav[hx] = 0; rpm[hx] = 0;
     if
     :: aval[ha] != 0 && aacc[ha] == qb[idx] && aval[ha] == qv[idx] -> rk[hx] = V_OK
     :: else ->
        if
        :: qb[idx] < aprom[ha] -> rk[hx] = V_NO; rpm[hx] = aprom[ha]
        :: else ->
           if
           :: alr[ha] > 0 && !SAMETAG(qv[idx], aval[ha]) -> rk[hx] = V_LEASE
           :: else ->
              aacc[ha] = qb[idx]; aval[ha] = qv[idx]; alr[ha] = VLEASE(qv[idx]);
              if
              :: qn[idx] > aprom[ha] -> aprom[ha] = qn[idx]
              :: else
              fi;
              if
              :: qb[idx] > aprom[ha] -> aprom[ha] = qb[idx]
              :: else
              fi;
              rk[hx] = V_OK;
              upd_named()
           fi
        fi
     fi
  fi
}

/* proposer `to' handles the reply in slot idx (from acceptor idx / N) */
inline prop_handle(idx) {
  ha = idx / N; hp = idx % N;
  if
  :: rt[idx] == RPROM ->
     if
     :: rk[idx] != V_OK -> see(hp, rpm[idx])
     :: else
     fi;
     if
     :: rab[idx] != 0 -> see(hp, rab[idx])
     :: else
     fi;
     if
     :: pk[hp] != 0 && pph[hp] == PH_PREP && rb[idx] == pb[hp] &&
        (pel[hp] < DL || PLATE) && ((pyes[hp] | pno[hp]) & BIT(ha)) == 0 ->
        if
        :: rk[idx] == V_OK ->
           pyes[hp] = pyes[hp] | BIT(ha);
           if
           :: rab[idx] > pbb[hp] -> pbb[hp] = rab[idx]; pbv[hp] = rav[idx]
           :: else
           fi
        :: else -> pno[hp] = pno[hp] | BIT(ha)
        fi;
        if
        :: POP(pyes[hp]) >= MAJ -> promised_majority(hp)
        :: POP(pyes[hp]) < MAJ && POP(pno[hp]) >= LOSE -> lost_round(hp)
        :: else
        fi
     :: else
     fi
  :: rt[idx] == RACC ->
     if
     :: rk[idx] == V_NO -> see(hp, rpm[idx])
     :: else
     fi;
     if
     :: pk[hp] != 0 && pph[hp] == PH_ACC && rb[idx] == pb[hp] &&
        (pel[hp] < DL || PLATE) && ((pyes[hp] | pno[hp]) & BIT(ha)) == 0 ->
        if
        :: rk[idx] == V_OK -> pyes[hp] = pyes[hp] | BIT(ha)
        :: rk[idx] == V_NO -> pno[hp] = pno[hp] | BIT(ha)
        :: rk[idx] == V_LEASE -> pno[hp] = pno[hp] | BIT(ha); plse[hp] = plse[hp] | BIT(ha)
        fi;
        if
        :: POP(pyes[hp]) >= MAJ -> committed(hp)
        :: POP(pyes[hp]) < MAJ && POP(pno[hp]) >= LOSE ->
           if
           :: POP(plse[hp]) >= LOSE && !pfast[hp] -> finish(hp, O_LEASE)
           :: else -> lost_round(hp)
           fi
        :: else
        fi
     :: else
     fi
  fi;
  rt[idx] = 0; rb[idx] = 0; rk[idx] = 0; rpm[idx] = 0; rab[idx] = 0; rav[idx] = 0
}


/* member `to' answers the recovery request in slot idx (from idx / N) */
inline rec_request(idx) {
  ha = idx / N; hp = idx % N; hx = hp*N + ha;
  if
  :: ardy[hp] ->
     xt[hx] = X_RDY; xn[hx] = xq[idx]; xpm[hx] = aprom[hp]; xab[hx] = aacc[hp]; xav[hx] = aval[hp]
  :: !ardy[hp] && awt[hp] == 0 ->       /* rule 1: silent before the wait */
     xt[hx] = X_REC; xn[hx] = xq[idx]; xpm[hx] = 0; xab[hx] = 0; xav[hx] = 0
  :: else
  fi;
  xq[idx] = 0
}

/* recovering member `to' handles the recovery answer in slot idx (from idx / N) */
inline rec_answer(idx) {
  hp = idx / N; ha = idx % N;
  if
  :: !ardy[ha] && awt[ha] == 0 && (xn[idx] == alife[ha] + 1 || NONCE_OFF) ->
     if
     :: xt[idx] == X_REC ->
#ifdef PLANT_COUNT_RECOVERING
        acnt[ha] = acnt[ha] | BIT(hp);
#endif
        aans[ha] = aans[ha] | BIT(hp); ahold[ha] = ahold[ha] & (ALLN - BIT(hp))
     :: else ->
        /* QuorumAcceptor::adopt */
        if
        :: xpm[idx] > aprom[ha] -> aprom[ha] = xpm[idx]
        :: else
        fi;
        if
        :: xab[idx] > aprom[ha] -> aprom[ha] = xab[idx]
        :: else
        fi;
        if
        :: xav[idx] != 0 && (aval[ha] == 0 || xab[idx] > aacc[ha]) ->
           aacc[ha] = xab[idx]; aval[ha] = xav[idx]; alr[ha] = VLEASE(xav[idx])
        :: else
        fi;
        aans[ha] = aans[ha] | BIT(hp);
        if
        :: xav[idx] != 0 -> ahold[ha] = ahold[ha] | BIT(hp)
        :: else -> ahold[ha] = ahold[ha] & (ALLN - BIT(hp))
        fi;
        acnt[ha] = acnt[ha] | BIT(hp)
     fi;
     if
     :: POP(acnt[ha]) >= RTH -> ardy[ha] = 1
     :: POP(acnt[ha]) < RTH && aans[ha] == (ALLN - BIT(ha)) && ahold[ha] == 0 -> ardy[ha] = 1  /* bootstrap */
     :: else
     fi;
     if
     :: ardy[ha] -> acnt[ha] = 0; aans[ha] = 0; ahold[ha] = 0; aasked[ha] = 0
     :: else
     fi;
     upd_named()
  :: else
  fi;
  xt[idx] = 0; xn[idx] = 0; xpm[idx] = 0; xab[idx] = 0; xav[idx] = 0
}


/* ------------------------------------------------------------ faults, time */
inline restart(r, intact) {
  /* agent and proposer: a new process */
  if
  :: lastact[r] > prevlife[r] -> prevlife[r] = lastact[r]
  :: else
  fi;
  act[r] = 0; mye[r] = 0; dese[r] = 0; deso[r] = 0; rbump[r] = 0; bo[r] = 0;
  clear_op(r);
  prn[r] = 0; prv[r] = 0;
  /* acceptor */
  if
  :: intact && ardy[r] -> alr[r] = VLEASE(aval[r])   /* loaded: lease clock restarts */
  :: else ->
     aprom[r] = 0; aacc[r] = 0; aval[r] = 0; alr[r] = 0;
     ardy[r] = 0; awt[r] = WAIT; alife[r]++;
     acnt[r] = 0; aans[r] = 0; ahold[r] = 0; aasked[r] = 0
  fi;
  nrest++;
  upd_named()
}

#define DEC(x, k) x = (x > k -> x - k : 0)

inline tick() {
  j = 0;
  do
  :: j < N ->
     DEC(act[j], rate[j]);
     DEC(alr[j], rate[j]);
     DEC(awt[j], rate[j]);
     if
     :: pk[j] != 0 ->
        pel[j] = (pel[j] + rate[j] > PELCAP -> PELCAP : pel[j] + rate[j]);
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
  skip   /* a break must not leave the d_step */
}

#ifdef LIVE
/* after "stable": time moves only when nothing is urgent */
#define SLOTS_EMPTY(s) (s[0] == 0 && s[1] == 0 && s[2] == 0 && s[3] == 0 && s[4] == 0 && \
   s[5] == 0 && s[6] == 0 && s[7] == 0 && s[8] == 0 && (N == 3 || EMPTY5(s)))
#define EMPTY5(s) (s[NN-1] == 0 && s[NN-2] == 0 && s[NN-3] == 0 && s[NN-4] == 0 && s[NN-5] == 0 && \
   s[NN-6] == 0 && s[NN-7] == 0 && s[NN-8] == 0 && s[NN-9] == 0 && s[NN-10] == 0 && s[NN-11] == 0 && \
   s[NN-12] == 0 && s[NN-13] == 0 && s[NN-14] == 0 && s[NN-15] == 0 && s[NN-16] == 0)
#define CALM(g) (pph[g] != PH_BACKOFF && (ardy[g] || awt[g] > 0 || aasked[g]))
#define QUIET (SLOTS_EMPTY(qt) && SLOTS_EMPTY(rt) && SLOTS_EMPTY(xq) && SLOTS_EMPTY(xt) && \
   CALM(0) && CALM(1) && CALM(2) && (N == 3 || (CALM(N-2) && CALM(N-1))) && \
   (act[named] > 0 || pk[named] != 0 || bo[named]))
#define MAY_TICK (!stable || QUIET)
#else
#define MAY_TICK true
#endif

/* ------------------------------------------------------ the alternatives */
#define DELIVER_REQ(x) :: d_step { qt[x] != 0 -> acc_handle(x); qt[x] = 0; qb[x] = 0; qn[x] = 0; qv[x] = 0 }
#define DUP_REQ(x)     :: d_step { qt[x] != 0 && ndup < MAXDUP && !stable -> ndup++; acc_handle(x) }
#define DELIVER_REP(x) :: d_step { rt[x] != 0 -> prop_handle(x) }
#define DELIVER_XQ(x)  :: d_step { xq[x] != 0 -> rec_request(x) }
#define DELIVER_XS(x)  :: d_step { xt[x] != 0 -> rec_answer(x) }

#if N == 3
#define NBUSY ((pk[0] != 0) + (pk[1] != 0) + (pk[2] != 0))
#define NAMES_EST(p) (NE(0, p) || NE(1, p) || NE(2, p))
#else
#define NBUSY ((pk[0] != 0) + (pk[1] != 0) + (pk[2] != 0) + (pk[3] != 0) + (pk[4] != 0))
#define NAMES_EST(p) (NE(0, p) || NE(1, p) || NE(2, p) || NE(3, p) || NE(4, p))
#endif
/* some acceptor holds an entry naming p established (else RESUME is pointless) */
#define NE(a, p) (aval[a] != 0 && VM(aval[a]) == p && VPH(aval[a]) == EST)
#define IDLE(p) (pk[p] == 0 && !stable && NBUSY < MAXOPS)
#define STARTS(p) \
  :: d_step { IDLE(p) && act[p] > 0 -> begin(p, K_RENEW) } \
  :: d_step { IDLE(p) && act[p] == 0 && dese[p] == 0 && NAMES_EST(p) -> begin(p, K_RESUME) } \
  :: d_step { IDLE(p) && act[p] == 0 && dese[p] == 0 -> begin(p, K_DESIG) } \
  :: d_step { IDLE(p) && act[p] == 0 && dese[p] != 0 -> begin(p, K_ESTAB) } \
  :: d_step { IDLE(p) && act[p] == 0 && dese[p] != 0 && deso[p] != p -> begin(p, K_HANDB) } \
  :: d_step { pph[p] == PH_BACKOFF -> full_round(p) } \
  :: d_step { !ardy[p] && awt[p] == 0 && !aasked[p] -> ASK(p) }

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

/* recovery requests to every other member not yet counted */
inline ASK(a) {
  i = 0;
  do
  :: i < N ->
     if
     :: i != a && (acnt[a] & BIT(i)) == 0 -> xq[a*N + i] = alife[a] + 1
     :: else
     fi;
     i++
  :: else -> break
  od;
  aasked[a] = stable
}

#if defined(MEMORY_ONLY)
#define RESTARTS(r) :: d_step { !stable && nrest < MAXRESTART && LOSS_OK(r) -> restart(r, 0) }
#elif defined(DURABLE_ONLY)
#define RESTARTS(r) :: d_step { !stable && nrest < MAXRESTART -> restart(r, 1) }
#else
#define RESTARTS(r) \
  :: d_step { !stable && nrest < MAXRESTART && ardy[r] -> restart(r, 1) } \
  :: d_step { !stable && nrest < MAXRESTART && LOSS_OK(r) -> restart(r, 0) }
#endif

#ifdef NO_DOUBLE_LOSS
#if N == 3
#define LOSS_OK(r) ((r == 0 || ardy[0]) && (r == 1 || ardy[1]) && (r == 2 || ardy[2]))
#else
#define LOSS_OK(r) ((r == 0 || ardy[0]) && (r == 1 || ardy[1]) && (r == 2 || ardy[2]) && (r == 3 || ardy[3]) && (r == 4 || ardy[4]))
#endif
#else
#define LOSS_OK(r) true
#endif

#define NODE(p) STARTS(p) STARTS_LIVE(p) NOTICE(p) RESTARTS(p)

#if N == 3
#define FOR_N(M) M(0) M(1) M(2)
#define FOR_NN(M) M(0) M(1) M(2) M(3) M(4) M(5) M(6) M(7) M(8)
#else
#define FOR_N(M) M(0) M(1) M(2) M(3) M(4)
#define FOR_NN(M) M(0) M(1) M(2) M(3) M(4) M(5) M(6) M(7) M(8) M(9) M(10) M(11) M(12) \
  M(13) M(14) M(15) M(16) M(17) M(18) M(19) M(20) M(21) M(22) M(23) M(24)
#endif

active proctype world()
{
  d_step {
    rate[0] = R0; rate[1] = R1; rate[2] = R2;
#if N == 5
    rate[3] = R3; rate[4] = R4;
#endif
    /* node 0 is the established master at epoch 1; its renewal at ballot
       (1,0) was just accepted everywhere (next (2,0) promised) */
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
  :: d_step { !stable -> stable = 1 }
#endif
  FOR_NN(DELIVER_REQ)
  FOR_NN(DUP_REQ)
  FOR_NN(DELIVER_REP)
  FOR_NN(DELIVER_XQ)
  FOR_NN(DELIVER_XS)
  FOR_N(NODE)
  od
}
