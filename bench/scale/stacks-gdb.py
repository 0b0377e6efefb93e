# Goroutine stacks of a running Go process, grouped by the function each
# goroutine runs and the go statement that started it: count, total stack
# bytes, sizes, and the average bytes in use (hi - sp) when parked. Go's
# runtime shrinks a stack at a GC only while less than a quarter of it
# (plus 800 bytes) is in use, so "in use when parked" is what decides a
# long-lived goroutine's stack size.
#
#   gdb -p PID -batch -ex "source bench/scale/stacks-gdb.py"
#
# (The process stops for the seconds this takes.) Writes to stdout.
import collections

import gdb

_names = {}


def name(pc):
    pc = int(pc)
    if pc not in _names:
        try:
            b = gdb.current_progspace().block_for_pc(pc)
            while b is not None and b.function is None:
                b = b.superblock
            _names[pc] = b.function.name if b is not None else hex(pc)
        except Exception:
            _names[pc] = hex(pc)
    return _names[pc]


allgs = gdb.parse_and_eval("'runtime.allgs'")['array']
n = int(gdb.parse_and_eval("'runtime.allglen'"))
sizes = collections.Counter()
total = collections.Counter()
count = collections.Counter()
used = collections.Counter()
for i in range(n):
    g = allgs[i]
    if int(g['atomicstatus']['value']) == 6:  # _Gdead
        continue
    lo, hi, sp = int(g['stack']['lo']), int(g['stack']['hi']), int(g['sched']['sp'])
    key = (name(g['startpc']), name(g['gopc']))
    sizes[(key, hi - lo)] += 1
    total[key] += hi - lo
    count[key] += 1
    if sp:
        used[key] += hi - sp
for key, t in sorted(total.items(), key=lambda kv: -kv[1])[:25]:
    s = sorted((size, c) for (k, size), c in sizes.items() if k == key)
    print("%8.1f MiB %7d goroutines, %6d B in use  %s <- %s  sizes %s" % (
        t / 1048576, count[key], used[key] // count[key], key[0], key[1], s))
