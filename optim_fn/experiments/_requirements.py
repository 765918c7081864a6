"""Fails early, naming the extra to install, when the experiments' packages are missing."""


import importlib.util as _importlib_util

_MISSING = [
    package
    for package in ("matplotlib", "tqdm", "sklearn")
    if _importlib_util.find_spec(package) is None
]
if _MISSING:
    raise ImportError(
        f"optim_fn.experiments (and `optim-fn compare`) needs {', '.join(_MISSING)}, from "
        "the 'experiments' extra: pip install 'optim-fn[experiments]' (or `make demo`)"
    )

