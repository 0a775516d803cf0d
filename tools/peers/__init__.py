"""tools/bench-vs-peers: rolegrid against Redis Sentinel, etcd and keepalived.

Modules:
  env       packages, tmpfs, processes by PID, setns probes, waiting
  systems   the four systems behind one interface, on per-host namespaces
  trials    failover, restored old master, replicated writes, catch-up
  report    the table, the goals, the SVG plots
"""
