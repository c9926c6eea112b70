"""bench/run --s4-pin: a pinned process and everything it starts keep to their CPUs."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from bench.scenarios import _cpu_split
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
