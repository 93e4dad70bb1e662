"""Shared helpers of the five benchmark scripts in ``benchmarks/``.

Cost (``overhead.py``, ``cycles.py``):

- :mod:`support.example`: the digits example in a scratch dir, its policy variants, traffic;
- :mod:`support.hotloop`, :mod:`support.insitu`, :mod:`support.http_legs`: overhead.py's parts;
- :mod:`support.report`: statistics, the machine's description, tables and JSON output.

Detection and red team (``detection.py``, ``efficacy.py``):

- :mod:`support.datasets`: the two data sets, their served models and the judge;
- :mod:`support.service`: the guarded BentoML service in process and its oracle;
- :mod:`support.ways`: how an attack stream uses keys (one key, rotation, adaptive);
- :mod:`support.attacks`: the project's own query attacks (inversion, boundary search, extraction);
- :mod:`support.evasion`: ART's evasion attacks through that oracle;
- :mod:`support.inversion`: the project's inversion attacks through it;
- :mod:`support.crowd`: the benign crowd;
- :mod:`support.scoring`: targets, verdicts and markdown tables;
- :mod:`support.detection_cost`: what detection costs per query;
- :mod:`support.efficacy_apps`, :mod:`support.efficacy_runs`, :mod:`support.efficacy_report`:
  efficacy.py's served defences, attack runs, and outputs.

Load (``load.py``): :mod:`support.spend`, the rate limiter's cost per spend.
Servers for all of them: :mod:`support.serving` (``bentoml serve``, ``redis-server``).

A new option of a script (``--watermark``, ``--extraction``, ...) is a module
here with one function that runs the measurement and returns its table (and
its figures for the JSON), listed in the script's ``EXTRAS``
(:mod:`support.extras`).

Nothing here imports from ``tests/``.
"""
