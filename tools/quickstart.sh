#!/usr/bin/env bash
# A local 3-node rolegrid cluster in a private network namespace, shown step
# by step with rolegridctl: forming, roles, a write read back on every node,
# kill -9 of the master and the replica taking over, the old master's restart
# with a new incarnation, its data back and its demotion to replica.
# Cleans up after itself; takes about 15 s.
#
#   tools/quickstart.sh      from any directory (needs root, or user namespaces)
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cd "$here/.."

if [[ -z "${ROLEGRID_QUICKSTART_NETNS:-}" ]]; then
  # Outside the namespace: build first (it may need the network for apt).
  "$here/setup.sh" >/dev/null
  unshare=(unshare -n)
  [[ $(id -u) -eq 0 ]] || unshare=(unshare -r -n)
  export ROLEGRID_QUICKSTART_NETNS=1
  exec "${unshare[@]}" -- bash "$here/quickstart.sh" "$@"
fi

# Inside a private network namespace: nothing sent here leaves the machine.
ip link set lo up
ip link set lo multicast on
ip route replace 224.0.0.0/4 dev lo

bin=build/programs
dir=$(mktemp -d "${TMPDIR:-/tmp}/rolegrid-quickstart.XXXXXX")
declare -A pid=()

cleanup() {
  local p
  for p in "${pid[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  sleep 0.2
  for p in "${pid[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$dir"
}
trap cleanup EXIT

step() { printf '\n==> %s\n' "$*"; }

"$bin/rolegrid" keygen "$dir/secret"

start_node() {
  local i=$1
  "$bin/rolegrid" --node "n$i" --members n1,n2,n3 --listen "127.0.0.1:740$i" --admin "127.0.0.1:750$i" \
    --multicast 239.77.0.1:7400 --secret-file "$dir/secret" --data-dir "$dir/data-n$i" >>"$dir/n$i.log" 2>&1 &
  pid[$i]=$!
}

ctl() {
  local i=$1
  shift
  "$bin/rolegridctl" --node "127.0.0.1:750$i" --secret-file "$dir/secret" "$@"
}

# wait_for SECONDS DESCRIPTION COMMAND...: polls COMMAND every 0.1 s.
wait_for() {
  local limit=$1 what=$2 tries
  shift 2
  for ((tries = limit * 10; tries > 0; tries--)); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 0.1
  done
  echo "quickstart: timed out after ${limit} s waiting for ${what}; node logs:" >&2
  tail -n 20 "$dir"/n*.log >&2
  exit 1
}

# state_of OBSERVER NODE: NODE's state in OBSERVER's members view.
state_of() { ctl "$1" members | awk -v n="$2" '$1 == n { print $2 }'; }
all_alive() { local i; for i in 1 2 3; do [[ $(ctl "$i" members | grep -cw alive) -eq 3 ]] || return 1; done; }
seen_as() { local o; for o in "${@:3}"; do [[ $(state_of "$o" "$1") == "$2" ]] || return 1; done; }
incarnation() { ctl "$1" --json status | sed -n 's/^  "incarnation": \([0-9]*\),*$/\1/p'; }
now_ms() { date +%s%3N; }

step "Starting n1, n2, n3 (multicast 239.77.0.1:7400 on lo of a private network namespace; secret in $dir/secret)"
for i in 1 2 3; do start_node "$i"; done
wait_for 10 "the cluster to form" all_alive
echo "formed: every node sees all three alive"

step "rolegridctl members (on n1)"
ctl 1 members
step "rolegridctl status (on n1)"
ctl 1 status

step "put demo/greeting on n1; it returns once every member applied it"
ctl 1 put demo greeting "hello from n1"
for i in 2 3; do echo "get demo greeting on n$i: $(ctl "$i" get demo greeting)"; done
ctl 3 put-field demo profile colour blue >/dev/null
ctl 2 put-field demo profile size large >/dev/null
echo "put-field on n3 and n2, get on n1:"
ctl 1 get demo profile

# master_is OBSERVER NODE: OBSERVER sees NODE as the established master.
master_is() { ctl "$1" --json roles | grep -q "\"node\": \"$2\""; }
master_of() { ctl "$1" --json master | sed -n 's/^  "node": "\(.*\)",*$/\1/p'; }
role_of() { ctl "$1" --json roles | python3 -c "import json,sys; print(json.load(sys.stdin)['self']['role'])"; }
established_elsewhere() {  # OBSERVER OLD: an established master other than OLD
  local m
  m=$(ctl "$1" --json master 2>/dev/null) || return 1
  grep -q '"phase": "established"' <<<"$m" && ! grep -q "\"node\": \"$2\"" <<<"$m"
}

wait_for 10 "a master and a replica" sh -c "'$bin/rolegridctl' --node 127.0.0.1:7501 --secret-file '$dir/secret' roles | grep -q '^replica     n'"
step "rolegridctl roles (on n1): one master, one replica, one data node, each with its last hook"
ctl 1 roles

old=$(master_of 1)
oi=${old#n}
other=1; [[ $oi == 1 ]] && other=2
old_inc=$(incarnation "$oi")
step "kill -9 the master $old (incarnation $old_inc): the replica takes over"
t0=$(now_ms)
{ kill -KILL "${pid[$oi]}"; wait "${pid[$oi]}"; } 2>/dev/null || true
unset "pid[$oi]"
wait_for 10 "a new master" established_elsewhere "$other" "$old"
new=$(master_of "$other")
echo "$new is master $(($(now_ms) - t0)) ms after the kill"
ctl "$other" roles

step "n$other writes while $old is down"
ctl "$other" put demo while-down "written while $old was down"

step "Restarting $old (same id and ports): a new incarnation, the data copied back, and it finds the newer master and demotes itself"
t1=$(now_ms)
start_node "$oi"
# Its own answer says it is replica ("self"), and then the others' copy of
# its node entry says so too (the entry is written after its hook ran).
self_is_replica() {
  "$bin/rolegridctl" --node "127.0.0.1:750$1" --secret-file "$dir/secret" --json roles 2>/dev/null |
    python3 -c 'import json, sys; sys.exit(json.load(sys.stdin)["self"]["role"] != "replica")'
}
sees_replica() {
  "$bin/rolegridctl" --node "127.0.0.1:750$1" --secret-file "$dir/secret" --json roles 2>/dev/null |
    python3 -c 'import json, sys; n = [x for x in json.load(sys.stdin)["nodes"] if x["id"] == sys.argv[1]]; sys.exit(not n or n[0]["role"] != "replica")' "$2"
}
wait_for 10 "$old to demote itself" self_is_replica "$oi"
echo "$old is replica $(($(now_ms) - t1)) ms after its restart; incarnation $old_inc before, $(incarnation "$oi") now"
wait_for 5 "n$other to see $old as replica" sees_replica "$other" "$old"
ctl "$other" roles
for key in greeting while-down; do echo "get demo $key on $old: $(ctl "$oi" get demo "$key")"; done
step "rolegridctl events on $old: what it did after the restart"
ctl "$oi" events | grep -E '\+|hook ' | tail -n 6

step "Stopping the cluster (SIGTERM: each node leaves gracefully)"
for i in 3 2 1; do
  [[ -n "${pid[$i]:-}" ]] || continue
  kill -TERM "${pid[$i]}"
  wait "${pid[$i]}" || true
  unset "pid[$i]"
done
echo "done"
