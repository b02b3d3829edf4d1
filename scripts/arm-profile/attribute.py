#!/usr/bin/env python3
"""Attributes hotblocks.so counts to the functions of an unstripped aarch64 binary.

    attribute.py BIN ONE.txt THREE.txt [N]

ONE and THREE: counts of `edgesieve detect` on 1 and on 3 frames. Prints the N (default 30)
functions with the most instructions per frame ((THREE - ONE) / 2) and from start to ready
(ONE less a frame). A block is charged to the symbol at or before its address, so code inlined
into a function counts as that function's.
"""
import bisect
import collections
import subprocess
import sys


def symbols(binary):
    out = subprocess.run(
        ["aarch64-linux-gnu-nm", "-C", "--defined-only", binary],
        capture_output=True, text=True, check=True,
    ).stdout
    syms = []
    for line in out.splitlines():
        parts = line.split(" ", 2)
        if len(parts) == 3 and parts[1] in "tTwW":
            syms.append((int(parts[0], 16), parts[2]))
    if not syms:
        sys.exit(f"{binary}: no function symbols (build it with CARGO_PROFILE_<P>_STRIP=false)")
    syms.sort()
    return [a for a, _ in syms], [n for _, n in syms]


def counts(path, addrs, names):
    c = collections.Counter()
    with open(path) as f:
        for line in f:
            vaddr, insns, execs = line.split()
            i = bisect.bisect_right(addrs, int(vaddr, 16)) - 1
            c[names[i] if i >= 0 else "?"] += int(insns) * int(execs)
    return c


def show(title, c, n):
    print(f"{title}: {sum(c.values()) / 1e6:.1f} M instructions")
    for name, v in sorted(c.items(), key=lambda kv: -kv[1])[:n]:
        print(f"{v / 1e6:9.2f} M  {name[:140]}")


def main():
    if len(sys.argv) not in (4, 5):
        sys.exit(__doc__)
    binary, one, three = sys.argv[1:4]
    n = int(sys.argv[4]) if len(sys.argv) == 5 else 30
    addrs, names = symbols(binary)
    c1, c3 = counts(one, addrs, names), counts(three, addrs, names)
    keys = set(c1) | set(c3)
    frame = {k: (c3[k] - c1[k]) / 2 for k in keys}
    start = {k: c1[k] - frame[k] for k in keys}
    show("per frame", frame, n)
    show("start to ready", start, n)


if __name__ == "__main__":
    main()
