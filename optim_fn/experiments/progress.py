"""A progress bar that follows a jitted run chunk by chunk, without stalling it.

The runner compiles one chunk of steps and calls it repeatedly. Dispatch is
asynchronous, so the next chunk is queued before waiting for the previous one: the
device never idles while the bar is redrawn, and the bar advances when a chunk has
really finished rather than when it was queued.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
from tqdm import tqdm

# Runs shorter than this never show a bar, so quick experiments print nothing.
AUTO_DELAY_SECONDS = 1.0


def run_chunks(
    chunk: Callable[[Any, int], tuple[Any, Any]],
    carry: Any,
    steps_per_chunk: Sequence[int],
    *,
    progress: bool | None = None,
    description: str = "",
) -> tuple[Any, list[Any]]:
    """Calls ``carry, out = chunk(carry, index)`` for every chunk; returns the outputs.

    Args:
      chunk: the compiled chunk, taking the carry and the chunk index.
      carry: the initial carry.
      steps_per_chunk: how many real steps each chunk advances (for the bar).
      progress: ``True`` always shows a bar, ``False`` never, ``None`` shows one on a
        terminal once the run has lasted :data:`AUTO_DELAY_SECONDS`.
      description: the bar's label.
    """
    bar = tqdm(
        total=sum(steps_per_chunk),
        desc=description,
        unit="step",
        # None: tqdm's own rule, no bar when the output is not a terminal (logs, CI).
        disable=False if progress else (None if progress is None else True),
        delay=0.0 if progress else AUTO_DELAY_SECONDS,
        leave=False,
        dynamic_ncols=True,
    )
    outputs: list[Any] = []
    with bar:
        for index in range(len(steps_per_chunk)):
            carry, out = chunk(carry, index)
            outputs.append(out)
            if index > 0:
                jax.block_until_ready(outputs[index - 1])
                bar.update(steps_per_chunk[index - 1])
        jax.block_until_ready((carry, outputs[-1]))
        bar.update(steps_per_chunk[-1])
    return carry, outputs
