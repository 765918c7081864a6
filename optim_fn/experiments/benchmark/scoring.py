"""Time to target, performance profiles and the AlgoPerf score (Dahl et al. 2023).

For optimizer ``s`` and workload ``w`` let ``t[s, w]`` be the time (steps or seconds) the
optimizer needs to reach the workload's target, ``inf`` when it never does. Then

* the performance ratio ``r[s, w] = t[s, w] / min_s' t[s', w]`` (``inf`` when ``t`` is, and
  for every optimizer when no optimizer reached the target);
* the performance profile ``rho_s(tau) = |{w : r[s, w] <= tau}| / |W|``, the fraction of
  workloads on which ``s`` is within a factor ``tau`` of the fastest;
* the score, AlgoPerf's normalised area under the profile,

  .. math::
      B_s = \\frac{1}{r_{max} - 1} \\int_1^{r_{max}} \\rho_s(\\tau)\\, d\\tau
          = \\frac{1}{|W|} \\sum_w \\max\\Big(0, \\frac{r_{max} - r_{s,w}}{r_{max} - 1}\\Big)

  with ``r_max = 4`` as in AlgoPerf: 1 means fastest everywhere, 0 never within ``r_max``
  times the fastest. The second form is exact (the profile is a step function).
"""

from __future__ import annotations

import numpy as np

R_MAX = 4.0


def time_to_target(
    steps: np.ndarray, values: np.ndarray, target: float, higher_is_better: bool
) -> float:
    """The first of ``steps`` whose metric ``values`` reach ``target``; ``inf`` if none does."""
    values = np.asarray(values, np.float64)
    hit = values >= target if higher_is_better else values <= target
    hits = np.flatnonzero(hit)  # NaN compares false: a diverged run never reaches it
    return float(np.asarray(steps)[hits[0]]) if hits.size else float("inf")


def performance_ratios(times: np.ndarray) -> np.ndarray:
    """``(optimizers, workloads)`` times to ``t / min over optimizers`` (``inf`` kept)."""
    times = np.asarray(times, np.float64)
    if np.any(times <= 0) or np.any(np.isnan(times)):
        raise ValueError("times to target must be positive or inf")
    best = times.min(axis=0, keepdims=True)
    with np.errstate(invalid="ignore"):
        ratios = times / best
    return np.where(np.isfinite(best), ratios, np.inf)


def performance_profile(ratios: np.ndarray, taus: np.ndarray) -> np.ndarray:
    """``rho[s, k]``: the fraction of workloads with ``ratios[s, w] <= taus[k]``."""
    ratios = np.asarray(ratios, np.float64)
    return (ratios[:, :, None] <= np.asarray(taus)[None, None, :]).mean(axis=1)


def score(ratios: np.ndarray, r_max: float = R_MAX) -> np.ndarray:
    """Each optimizer's area under its profile on ``[1, r_max]``, divided by ``r_max - 1``."""
    if not r_max > 1:
        raise ValueError(f"r_max must exceed 1, got {r_max!r}")
    ratios = np.asarray(ratios, np.float64)
    with np.errstate(invalid="ignore"):
        area = np.where(np.isfinite(ratios), (r_max - ratios) / (r_max - 1), 0.0)
    return np.clip(area, 0.0, 1.0).mean(axis=1)
