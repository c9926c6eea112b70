"""bench/run --s4-pin: a pinned process and everything it starts keep to their CPUs."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from bench.scenarios import _cpu_split, isolate, restore
from bench.stack import Proc

# Prints its own CPUs, then those of a child it starts (as hotpath serve starts workers).
_REPORT = ("import os, subprocess, sys; "
           "child = subprocess.run([sys.executable, '-c', "
           "'import os; print(sorted(os.sched_getaffinity(0)))'], "
           "capture_output=True, text=True).stdout.strip(); "
           "print(sorted(os.sched_getaffinity(0)), child)")


def test_the_node_gets_the_last_cpu_and_the_rest_get_the_others() -> None:
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        pytest.skip("needs two CPUs")
    node, others = _cpu_split()
    assert node == {cpus[-1]} and others == set(cpus[:-1])


def test_a_pinned_process_and_its_children_run_on_the_given_cpus(tmp_path: Path) -> None:
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        pytest.skip("needs two CPUs")
    proc = Proc("pinned", [sys.executable, "-c", _REPORT], tmp_path, stdout_pipe=True,
                cpus={cpus[-1]})
    out, _ = proc.popen.communicate(timeout=60)
    assert out.decode().split() == [f"[{cpus[-1]}]", f"[{cpus[-1]}]"], out
    # and an unpinned one keeps every CPU this process has
    free = Proc("free", [sys.executable, "-c", _REPORT], tmp_path, stdout_pipe=True)
    out, _ = free.popen.communicate(timeout=60)
    assert out.decode().strip() == f"{cpus} {cpus}", out


def test_isolate_moves_other_tasks_off_the_node_cpu_and_restore_brings_them_back(
        tmp_path: Path) -> None:
    cpus = set(os.sched_getaffinity(0))
    if len(cpus) < 2:
        pytest.skip("needs two CPUs")
    node = {max(cpus)}
    sleeper = [sys.executable, "-c", "import time; time.sleep(60)"]
    free = Proc("free", sleeper, tmp_path)
    bound = Proc("bound", sleeper, tmp_path, cpus=node)  # like a CPU's own kernel thread
    proc = tmp_path / "proc"  # a /proc holding only these two
    proc.mkdir()
    try:
        for p in (free, bound):
            (proc / str(p.popen.pid)).symlink_to(f"/proc/{p.popen.pid}")
        moved, names = isolate(node, proc)
        assert [tid for tid, _ in moved] == [free.popen.pid]
        assert moved[0][1] == cpus and names and names[0].startswith("python")
        assert os.sched_getaffinity(free.popen.pid) == cpus - node
        assert os.sched_getaffinity(bound.popen.pid) == node
        restore(moved)
        assert os.sched_getaffinity(free.popen.pid) == cpus
    finally:
        free.stop()
        bound.stop()
