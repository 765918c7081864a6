"""Every ```python block of README.md and docs/*.md runs as written.

A block is self-contained, or continues the previous block of the same file when the
line before its fence is ``<!-- continues -->`` (a chain of such blocks shares one
namespace). Blocks that must not run (shell, pseudo-code, multi-host setup) use another
fence language (```bash, ```text). Each file's blocks run in one subprocess with 8 CPU
devices (for the sharding examples), every chain in a fresh namespace; a failure names
the file and the line of the block's fence, and the traceback the doc's own line.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
CONTINUES = "<!-- continues -->"
FENCE = re.compile(r"^(\s*)```(\S*)\s*$")

RUNNER = r"""
import json, sys, traceback
try:
    import matplotlib
    matplotlib.use("Agg")
except ImportError:
    pass
chains = json.loads(sys.stdin.read())
failures = []
for chain in chains:
    namespace = {"__name__": "__doc_block__"}
    for block in chain:
        # Pad with newlines so that tracebacks give the line numbers of the doc itself.
        source = "\n" * block["line"] + block["code"]
        try:
            exec(compile(source, block["file"], "exec"), namespace)
        except BaseException:
            failures.append({"file": block["file"], "line": block["line"],
                             "error": traceback.format_exc(limit=-6)})
            break
print("DOCS-RESULT " + json.dumps(failures))
"""


def python_blocks(path: Path) -> list[dict]:
    """``[{"line": fence line (1-based), "code": ..., "continues": bool}]``."""
    lines = path.read_text().splitlines()
    blocks, i = [], 0
    while i < len(lines):
        match = FENCE.match(lines[i])
        if not match:
            i += 1
            continue
        start, language = i, match.group(2)
        i += 1
        body = []
        while i < len(lines) and not FENCE.match(lines[i]):
            body.append(lines[i])
            i += 1
        i += 1  # the closing fence
        if language != "python":
            continue
        previous = next((ln.strip() for ln in reversed(lines[:start]) if ln.strip()), "")
        blocks.append({"line": start + 1, "code": "\n".join(body) + "\n",
                       "continues": previous == CONTINUES})
    return blocks


def chains_of(path: Path) -> list[list[dict]]:
    chains: list[list[dict]] = []
    name = str(path.relative_to(ROOT))
    for block in python_blocks(path):
        block = {**block, "file": name}
        if block["continues"]:
            if not chains:
                raise AssertionError(f"{name}:{block['line']}: marked {CONTINUES} but "
                                     "there is no previous python block")
            chains[-1].append(block)
        else:
            chains.append([block])
    return chains


def run_chains(chains: list[list[dict]], timeout: float = 240) -> list[dict]:
    env = dict(os.environ)
    env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") +
                        " --xla_force_host_platform_device_count=8").strip()
    env["JAX_PLATFORMS"] = "cpu"
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    done = subprocess.run(
        [sys.executable, "-c", RUNNER], input=json.dumps(chains), capture_output=True,
        text=True, cwd=ROOT, env=env, timeout=timeout,
    )
    for line in done.stdout.splitlines():
        if line.startswith("DOCS-RESULT "):
            return json.loads(line[len("DOCS-RESULT "):])
    raise AssertionError(f"the doc runner died (rc {done.returncode}):\n{done.stderr[-4000:]}")


def report(failures: list[dict]) -> str:
    return "\n\n".join(
        f"{f['file']}:{f['line']}: this python block fails:\n{f['error']}" for f in failures
    )


@pytest.mark.parametrize("path", DOCS, ids=[str(p.relative_to(ROOT)) for p in DOCS])
def test_every_python_block_runs(path):
    chains = chains_of(path)
    if not chains:
        pytest.skip("no python blocks")
    failures = run_chains(chains)
    assert not failures, report(failures)


def test_a_broken_block_fails_naming_the_file_and_line(tmp_path):
    doc = tmp_path / "broken.md"
    doc.write_text(
        "# A doc\n\n```python\nx = 1\n```\n\n<!-- continues -->\n```python\n"
        "assert x == 1\n```\n\n```python\nprint(x)\n```\n\n```bash\nnot python\n```\n"
    )
    blocks = python_blocks(doc)
    assert [(b["line"], b["continues"]) for b in blocks] == [(3, False), (8, True), (12, False)]
    chains = [[{**b, "file": "broken.md"} for b in blocks[:2]],
              [{**blocks[2], "file": "broken.md"}]]
    failures = run_chains(chains)
    assert [(f["file"], f["line"]) for f in failures] == [("broken.md", 12)]
    message = report(failures)
    assert "broken.md:12: this python block fails" in message
    assert 'File "broken.md", line 13' in message and "NameError" in message
