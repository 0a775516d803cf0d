"""rgkit: the Python side of rolegrid's tests and tools, one package shared
by the integration tests (tests/integration), rolegrid-chaos (tools/chaos),
the failover benchmark and the peer benchmarks (tools/peers). Standard
library only.

  paths    where the built binaries are
  checks   TestFailure, check, note, wait_until: bounded waits that say why
  admin    the admin protocol spoken directly (AdminConn), read_secret
  procs    child processes that die with their parent
  local    a cluster of real rolegrid processes on loopback (Node, Cluster)
"""
