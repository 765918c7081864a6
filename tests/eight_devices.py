"""What the 8-device test files share: rerunning a file on 8 simulated CPU devices, and
reading the collectives of a compiled step from its HLO text."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import numpy as np

COLLECTIVES = ("all-gather", "all-to-all", "all-reduce", "reduce-scatter", "collective-permute")
DTYPE_BYTES = {"f64": 8, "f32": 4, "s32": 4, "u32": 4, "bf16": 2, "f16": 2, "s8": 1, "u8": 1,
               "pred": 1}


def run_on_eight_devices(path: str, expected: int, selection: str | None = None) -> None:
    """Runs the tests of ``path`` (those ``-k selection`` picks) in a subprocess with 8
    CPU devices; fails unless they pass and at least ``expected`` of them ran."""
    env = dict(os.environ)
    env["XLA_FLAGS"] = (
        env.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
    ).strip()
    env["JAX_PLATFORMS"] = "cpu"
    command = [sys.executable, "-m", "pytest", path, "-q", "-x", "-p", "no:cacheprovider"]
    if selection is not None:
        command += ["-k", selection]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-6000:]
    # The subprocess must really have run the 8-device tests, not skipped them.
    passed = re.search(r"(\d+) passed", output)
    assert passed and int(passed.group(1)) >= expected, output[-3000:]


def collectives(compiled_text: str) -> dict[str, list[int]]:
    """Per collective kind, the bytes of each instruction's result (tuples summed; async
    pairs counted once, by their start)."""
    found: dict[str, list[int]] = {name: [] for name in COLLECTIVES}
    # A tuple's element comments (`/*index=5*/`) hold an "=", which ends the match below.
    compiled_text = re.sub(r"/\*index=\d+\*/", "", compiled_text)
    pattern = r"= ([^=]*?) (" + "|".join(COLLECTIVES) + r")(?:-start)?\("
    for match in re.finditer(pattern, compiled_text):
        arrays = re.findall(r"(\w+)\[([\d,]*)\]", match.group(1))
        size = sum(
            DTYPE_BYTES[dtype] * int(np.prod([int(d) for d in dims.split(",") if d]))
            for dtype, dims in arrays
        )
        found[match.group(2)].append(size)
    return found


def collective_counts(compiled_text: str) -> dict[str, int]:
    """How many instructions of each collective kind ``compiled_text`` holds."""
    return {name: len(sizes) for name, sizes in collectives(compiled_text).items()}
