"""bench/run --s4-pin: a pinned process and everything it starts keep to their CPUs."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from bench.scenarios import _cpu_split, cpu_ticks, isolate, restore, steal_percent
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


def _stat(path: Path, cpu0: list[int], cpu1: list[int]) -> Path:
    total = [a + b for a, b in zip(cpu0, cpu1)]
    path.write_text("".join(f"{name} {' '.join(map(str, t))} 0 0\n" for name, t in
                            (("cpu", total), ("cpu0", cpu0), ("cpu1", cpu1)))
                    + "intr 1 2 3\nctxt 99\n")
    return path


def test_steal_is_each_cpus_share_of_its_time_the_host_took(tmp_path: Path) -> None:
    # user nice system idle iowait irq softirq steal
    before = cpu_ticks(_stat(tmp_path / "a", [100, 0, 50, 800, 0, 0, 10, 40],
                             [300, 0, 20, 600, 0, 0, 5, 75]))
    assert before == {0: (40, 1000), 1: (75, 1000)}
    after = cpu_ticks(_stat(tmp_path / "b", [150, 0, 60, 960, 0, 0, 10, 20 + 40],
                            [400, 0, 20, 650, 0, 0, 5, 75]))
    assert steal_percent(before, after) == {0: 8.33, 1: 0.0}
    assert steal_percent(after, after) == {}  # no time passed: nothing to say
