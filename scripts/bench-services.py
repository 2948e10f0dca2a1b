#!/usr/bin/env python3
"""Service and self-scaling numbers for issue 6, each with its baseline in the same run.

1. Respawn: a DEPLOYed shell service is SIGKILLed N times; the time from the kill to the new
   run's first instruction (it writes its own timestamp), with the restart delay set to 0 so none
   has to be subtracted. Baseline: the same script under a bare `while :; do sh svc.sh; done`
   supervisor.
2. Scaling: a burst of SLEEP jobs on one worker of capacity 4, once with --max-workers 1 (a fixed
   single worker) and once with --max-workers 4; the drain time of each, their ratio, and the
   time from each scaling decision to the first job running on a new child worker.

Usage: scripts/bench-services.py [--kills 50] [--jobs 200] [--sleep-ms 200]
"""

import argparse
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, "target", "release", "titan")


def wait_for(what, check, timeout=60.0, pause=0.001):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(pause)
    sys.exit(f"timed out waiting for {what}")


class Cluster:
    def __init__(self, tmp, master_args, worker_args):
        self.tmp = tmp
        self.procs = []
        # The master creates its keys here; the worker and the CLI read them (issue 14).
        os.environ["TITAN_ACCESS_FILE"] = os.path.join(tmp, "access")
        out = os.path.join(tmp, "master.out")
        self.spawn(
            [BIN, "master", "--port", "0", "--log-port", "0", "--shards", "2",
             "--data-dir", os.path.join(tmp, "data"), *master_args], out)
        self.addr = wait_for("the master", lambda: ready_addr(out))
        wout = os.path.join(tmp, "worker.out")
        self.spawn(
            [BIN, "worker", "--port", "0", "--master", self.addr,
             "--workspace", os.path.join(tmp, "ws"), *worker_args], wout)
        wait_for("the worker", lambda: ready_addr(wout))
        self.worker_port = int(ready_addr(wout).rsplit(":", 1)[1])

    def spawn(self, argv, out):
        env = dict(os.environ, TITAN_LOG="warn")
        f = open(out, "w")
        self.procs.append(subprocess.Popen(argv, stdout=f, stderr=subprocess.DEVNULL, env=env))

    def cli(self, *args):
        res = subprocess.run([BIN, *args, "--master", self.addr, "--json"],
                             capture_output=True, text=True, check=True)
        return json.loads(res.stdout)

    def stop(self):
        for p in reversed(self.procs):
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def ready_addr(path):
    try:
        with open(path) as f:
            m = re.search(r"ready on (\S+)", f.read())
            return m and m.group(1)
    except FileNotFoundError:
        return None


def starts(path):
    try:
        with open(path) as f:
            return [tuple(map(int, line.split())) for line in f if len(line.split()) == 2]
    except FileNotFoundError:
        return []


def kill_cycles(log, kills):
    """SIGKILLs the newest run `kills` times; returns each kill-to-next-start latency in ms."""
    out = []
    for n in range(1, kills + 1):
        runs = wait_for("a run", lambda: len(starts(log)) >= n and starts(log))
        pid = runs[n - 1][0]
        killed = time.time_ns()
        os.kill(pid, signal.SIGKILL)
        nxt = wait_for("the restart", lambda: len(starts(log)) > n and starts(log))
        out.append((nxt[n][1] - killed) / 1e6)
    return out


def describe(ms):
    q = statistics.quantiles(ms, n=10)
    return f"p50 {statistics.median(ms):.1f} ms, p90 {q[8]:.1f} ms, max {max(ms):.1f} ms (n={len(ms)})"


def bench_respawn(tmp, kills):
    perm = os.path.join(tmp, "perm")
    os.makedirs(perm)
    log = os.path.join(tmp, "starts")
    script = os.path.join(perm, "svc.sh")
    with open(script, "w") as f:
        f.write(f'echo "$$ $(date +%s%N)" >> {log}\nexec sleep 600\n')

    # Baseline: the cheapest possible supervisor.
    sup = subprocess.Popen(["bash", "-c", f"while :; do sh {script}; done"],
                           start_new_session=True, stderr=subprocess.DEVNULL)
    base = kill_cycles(log, kills)
    os.killpg(sup.pid, signal.SIGKILL)
    sup.wait()
    os.remove(log)

    d = os.path.join(tmp, "titan-respawn")
    os.makedirs(d)
    c = Cluster(d, ["--service-restart-ms", "0", "--crash-loop-starts", "0"],
                ["--perm-files", perm])
    try:
        c.cli("submit", "DEPLOY|svc.sh")
        titan = kill_cycles(log, kills)
    finally:
        c.stop()
    print(f"respawn, bash loop supervisor : {describe(base)}")
    print(f"respawn, titan (delay 0)      : {describe(titan)}")
    print(f"ratio of p50s                 : {statistics.median(titan) / statistics.median(base):.1f}x")


def bench_burst(tmp, jobs, sleep_ms, max_workers):
    d = os.path.join(tmp, f"burst-{max_workers}")
    os.makedirs(d)
    c = Cluster(d, ["--max-workers", str(max_workers), "--scale-after-ms", "200",
                    "--idle-timeout-ms", "60000"], ["--capacity", "4"])
    try:
        dag = " ; ".join(f"J{i}|SLEEP|{sleep_ms}|1|0|[]" for i in range(jobs))
        began = time.monotonic()
        labels = [j["label"] for j in c.cli("dag", dag)["jobs"]]
        first_on_child = {}
        pending = set(labels)
        while pending:
            running = c.cli("jobs", "--state", "RUNNING", "--limit", str(jobs))["jobs"]
            for j in running:
                port = j.get("worker_port")
                if port and port != c.worker_port:
                    first_on_child[port] = min(first_on_child.get(port, 1 << 63), j["started_at_us"])
            done = c.cli("jobs", "--state", "COMPLETED", "--limit", str(jobs))["jobs"]
            pending -= {j["label"] for j in done}
            time.sleep(0.02)
        drained = time.monotonic() - began
        spawns = [e for e in c.cli("stats")["scaling"] if e["action"] == "spawn"]
    finally:
        c.stop()
    lags = sorted(first_on_child.values())
    decisions = sorted(e["at_us"] for e in spawns)
    # Pair each child's first job with the spawn decision that preceded it, in order.
    to_jobs = [(j - s) / 1000 for s, j in zip(decisions, lags)]
    return drained, len(spawns), to_jobs


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--kills", type=int, default=50)
    ap.add_argument("--jobs", type=int, default=200)
    ap.add_argument("--sleep-ms", type=int, default=200)
    args = ap.parse_args()
    subprocess.run(["cargo", "build", "--release", "-q"], cwd=ROOT, check=True)
    tmp = tempfile.mkdtemp(dir=os.path.join(ROOT, "target"))
    try:
        bench_respawn(tmp, args.kills)
        one, _, _ = bench_burst(tmp, args.jobs, args.sleep_ms, 1)
        many, spawns, to_jobs = bench_burst(tmp, args.jobs, args.sleep_ms, 4)
        print(f"burst of {args.jobs} x SLEEP|{args.sleep_ms}, one worker of capacity 4:")
        print(f"  fixed single worker     : {one:.2f} s")
        print(f"  scaling to 4 workers    : {many:.2f} s ({spawns} spawns)")
        print(f"  speed-up                : {one / many:.2f}x")
        print("  decision -> first job on the new child: "
              + ", ".join(f"{ms:.0f} ms" for ms in to_jobs))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
