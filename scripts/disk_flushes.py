#!/usr/bin/env python3
"""How the disk under a folder takes the syncs an upload waits for: one `fdatasync`, two in
turn and two at once, and an upload's own set (a new image file, a new thumbnail file, their
folder) in turn and at once. If "at once" takes as long as "in turn", the device carries out
one cache flush at a time, and overlapping an upload's syncs cannot shorten it: only fewer
syncs can.

    python3 scripts/disk_flushes.py [FOLDER] [ROUNDS]

FOLDER defaults to a new folder in the current one (so, on the disk the service's `data/`
would use); it is removed afterwards. Run it on a quiet machine: other writers' data is
flushed by the same commands.
"""
import os
import shutil
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

parent = sys.argv[1] if len(sys.argv) > 1 else os.getcwd()
rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 300
work = tempfile.mkdtemp(prefix="disk-flushes-", dir=parent)
pool = ThreadPoolExecutor(max_workers=3)
page = b"x" * 4096
blob = b"y" * 6500


def appended(name):
    return os.open(os.path.join(work, name), os.O_CREAT | os.O_WRONLY | os.O_APPEND, 0o644)


def write_sync(fd):
    os.write(fd, page)
    os.fdatasync(fd)


def fsync_folder(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def upload_files(n, folder):
    """An upload's two new files, written and still open: what the syncs then cover."""
    fds = []
    for suffix in ("", ".thumb"):
        fd = os.open(os.path.join(folder, f"{n}{suffix}"), os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        os.write(fd, blob)
        fds.append(fd)
    return fds


def measure(step):
    times = []
    for n in range(rounds):
        start = time.perf_counter()
        step(n)
        times.append((time.perf_counter() - start) * 1e3)
    times.sort()
    return times


a, b = appended("a"), appended("b")
folder = os.path.join(work, "session")
os.mkdir(folder)
fsync_folder(work)


def upload_in_turn(n):
    fds = upload_files(f"t{n}", folder)
    for fd in fds:
        os.fdatasync(fd)
        os.close(fd)
    fsync_folder(folder)


def upload_at_once(n):
    fds = upload_files(f"o{n}", folder)
    jobs = [pool.submit(os.fdatasync, fd) for fd in fds] + [pool.submit(fsync_folder, folder)]
    for job in jobs:
        job.result()
    for fd in fds:
        os.close(fd)


cases = [
    ("one fdatasync", lambda n: write_sync(a)),
    ("two fdatasyncs in turn", lambda n: (write_sync(a), write_sync(b))),
    ("two fdatasyncs at once", lambda n: [j.result() for j in [pool.submit(write_sync, a), pool.submit(write_sync, b)]]),
    ("an upload's 3 syncs in turn", upload_in_turn),
    ("an upload's 3 syncs at once", upload_at_once),
]
try:
    print(f"{rounds} rounds each in {work}")
    print(f"{'':30} {'p50':>8} {'p90':>8} {'p99':>8}  (ms)")
    results = {}
    for name, step in cases:
        t = measure(step)
        results[name] = statistics.median(t)
        print(f"{name:30} {t[len(t) // 2]:8.3f} {t[len(t) * 9 // 10]:8.3f} {t[len(t) * 99 // 100]:8.3f}")
    two = results["two fdatasyncs at once"] / results["two fdatasyncs in turn"]
    three = results["an upload's 3 syncs at once"] / results["an upload's 3 syncs in turn"]
    print(f"at once / in turn, medians: two syncs {two:.2f}, an upload's three {three:.2f} "
          "(1.0: the device flushes one at a time; 0.5 or 0.33: they overlap fully)")
finally:
    os.close(a)
    os.close(b)
    shutil.rmtree(work)
