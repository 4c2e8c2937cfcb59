"""The benchmark's machine probes (psutil): the machine, and CPU time of one process tree."""

import contextlib
import os
import subprocess
import sys
import time

import psutil

from benchmarks.machine import cpu_by_process, load_average, machine_info, process_cpu_seconds


def test_machine_info_reports_cores_and_memory() -> None:
    info = machine_info()
    assert info["cores"] == os.cpu_count()
    assert info["memory_gib"] > 0
    assert info["cpu_model"]
    assert load_average() >= 0.0


def test_cpu_seconds_cover_the_descendants_of_a_root_only() -> None:
    spin = "import time\nend = time.process_time() + 0.4\nwhile time.process_time() < end: pass\ntime.sleep(30)"
    parent = subprocess.Popen(
        [sys.executable, "-c", f"import subprocess, sys; subprocess.run([sys.executable, '-c', {spin!r}])"]
    )
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            tree = process_cpu_seconds([parent.pid])
            if len(tree) == 2 and max(seconds for _, seconds in tree.values()) >= 0.4:
                break
            time.sleep(0.2)
        assert set(tree) >= {parent.pid} and len(tree) == 2
        assert os.getpid() not in tree
        spent = cpu_by_process({}, tree)
        assert sum(spent.values()) >= 0.4
        assert all(name.startswith("python") for name in spent)
    finally:
        children = psutil.Process(parent.pid).children(recursive=True)
        parent.kill()
        parent.wait()
        for child in children:
            with contextlib.suppress(psutil.NoSuchProcess):
                child.kill()


def test_cpu_by_process_counts_only_what_was_spent_between_snapshots() -> None:
    before = {1: ("python", 2.0), 2: ("raylet", 1.0)}
    after = {1: ("python", 5.0), 2: ("raylet", 1.01), 3: ("python", 1.5)}
    assert cpu_by_process(before, after) == {"python": 4.5}
