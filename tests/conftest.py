"""Runs the longest tests first, so that pytest-xdist's workers do not end on them.

With two workers, a 2-3 minute test (a notebook, an 8-device subprocess, the quick
benchmark) started in the last minutes of the run leaves the other worker idle; started
first, it runs beside the many short ones.
"""

from __future__ import annotations

LONG_FIRST = (
    "test_notebooks.py::test_notebook_executes",
    "test_benchmarks.py::",
    "test_sharding.py::test_on_eight_devices",
    "test_matrix_sharding.py::test_on_eight_devices",
    "test_multiprocess.py::",
    "test_cli.py::test_default_run_prints_the_table",
    "test_family_reference.py::test_bfloat16_params",
    "test_family_reference.py::test_complex_updates",
)


def pytest_collection_modifyitems(config, items):
    def rank(item):
        return 0 if any(mark in item.nodeid for mark in LONG_FIRST) else 1

    items.sort(key=rank)  # stable: the order within each group is kept
