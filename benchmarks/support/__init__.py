"""Reusable parts of the detection benchmark (``benchmarks/detection.py``).

- :mod:`support.datasets`: the two data sets, their served models and the judge;
- :mod:`support.service`: the guarded BentoML service in process and its oracle;
- :mod:`support.ways`: how an attack stream uses keys (one key, rotation, adaptive);
- :mod:`support.evasion`: ART's evasion attacks through that oracle;
- :mod:`support.inversion`: the project's own inversion attacks through it;
- :mod:`support.crowd`: the benign crowd;
- :mod:`support.scoring`: targets, verdicts and markdown tables.

Nothing here imports from ``tests/``.
"""
