#!/usr/bin/env python3
"""Peak memory of one node while a command runs: every 0.1 s, the sum over the processes whose
command line contains NAME (the ranks) of their private memory (RssAnon) plus what the command
added to the shared-memory directory (/dev/shm, where MPI's shared windows live), and, as a check,
the sum of their proportional set sizes (Pss: shared pages split between the processes that map
them, so nothing is counted twice). The median over the samples is the memory while training
(start-up and the final writes are short). Summing RSS instead would count every shared page once per
rank that touched it.

    Scripts/node_memory.py leffa-worker -- mpirun -np 2 .build/release/leffa-worker --run RUN
"""
import os, subprocess, sys, time

def kib(path, keys):
    out = dict.fromkeys(keys, 0)
    try:
        for line in open(path):
            k = line.split(":")[0]
            if k in out: out[k] = int(line.split()[1])
    except OSError:   # the process ended between listing and reading
        pass
    return out

def shm_used(directory):
    st = os.statvfs(directory)
    return (st.f_blocks - st.f_bfree) * st.f_frsize

def ranks(name, me):
    pids = []
    for p in os.listdir("/proc"):
        if not p.isdigit() or int(p) == me: continue
        try: cmd = open(f"/proc/{p}/cmdline", "rb").read().replace(b"\0", b" ").decode()
        except OSError: continue
        if name in cmd and "mpirun" not in cmd.split(" ")[0] and "node_memory" not in cmd: pids.append(p)
    return pids

def main():
    if "--" not in sys.argv or sys.argv.index("--") != 2:
        sys.exit("usage: node_memory.py NAME -- COMMAND...")
    name, cmd = sys.argv[1], sys.argv[3:]
    shm = os.environ.get("OMPI_MCA_osc_sm_backing_directory", "/dev/shm")
    base = shm_used(shm)
    child = subprocess.Popen(cmd)
    peak = {"node": 0, "anon": 0, "shm": 0, "pss": 0, "ranks": 0}
    samples = []
    while child.poll() is None:
        pids = ranks(name, os.getpid())
        anon = sum(kib(f"/proc/{p}/status", ["RssAnon"])["RssAnon"] for p in pids) * 1024
        pss = sum(kib(f"/proc/{p}/smaps_rollup", ["Pss"])["Pss"] for p in pids) * 1024
        added = max(shm_used(shm) - base, 0)
        if anon + added > peak["node"]:
            peak.update(node=anon + added, anon=anon, shm=added, ranks=len(pids))
        peak["pss"] = max(peak["pss"], pss)
        if pids: samples.append(anon + added)
        time.sleep(0.1)
    gb = lambda b: f"{b / 1e9:.3f} GB"
    median = sorted(samples)[len(samples) // 2] if samples else 0
    print(f"node_memory: peak {gb(peak['node'])} = private {gb(peak['anon'])} over {peak['ranks']} process(es) "
          f"+ {gb(peak['shm'])} added to {shm}; median {gb(median)}; peak sum of Pss {gb(peak['pss'])}", file=sys.stderr)
    sys.exit(child.returncode)

main()
