"""The benchmark: AlgoPerf's rules in small on the flax workloads.

* :mod:`~optim_fn.experiments.benchmark.search`: search spaces and the Halton sampler;
* :mod:`~optim_fn.experiments.benchmark.spaces`: the optimizers and their spaces;
* :mod:`~optim_fn.experiments.benchmark.train`: ``vmap``-ed training runs;
* :mod:`~optim_fn.experiments.benchmark.scoring`: time to target, profiles, scores;
* :mod:`~optim_fn.experiments.benchmark.job`: tune, rerun, score (``optim-fn benchmark``).
"""
