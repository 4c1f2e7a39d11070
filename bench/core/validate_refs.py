"""Writes a chain pipeline whose nodes name earlier nodes in placeholders, to time validation.

usage: validate_refs.py NODES OUT.json
Each node `nI` is a command naming `{{in.out.x}}`, its grandparent `n(I-2)`, and, every tenth,
the node 100 steps back: what `tessera validate` checks with its ancestry of nodes.
"""
import json
import sys

n, out = int(sys.argv[1]), sys.argv[2]
nodes = [{"id": "in", "type": "entry", "next": ["n0"]}]
for i in range(n):
    command = ["echo", "{{in.out.x}}"]
    if i >= 2:
        command.append("{{n%d.out.y}}" % (i - 2))
    if i >= 100 and i % 10 == 0:
        command.append("{{n%d.out.z}}" % (i - 100))
    nodes.append({"id": "n%d" % i, "type": "command", "command": command,
                  "next": ["n%d" % (i + 1)] if i < n - 1 else ["end"]})
nodes.append({"id": "end", "type": "end"})
with open(out, "w") as f:
    json.dump({"nodes": nodes}, f)
