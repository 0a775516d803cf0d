"""rolegrid-chaos: scenario runner, random soak and history checker for
rolegrid (see tools/rolegrid-chaos --help and README "Chaos tests").

Modules:
  netns     the private network: one namespace per node on a bridge, partitions
  cluster   real rolegrid processes in those namespaces, faults on them
  workload  clients writing unique keys and recording which were acknowledged
  history   the recorded history directory (event logs, faults, writes, snapshots)
  checker   the invariants, checked from a history alone
  scenario  the .chaos file format and its parser
  runner    runs a scenario on a fresh cluster
  soak      random faults from a seed
  timeline  text and SVG timelines of roles per node
"""
