"""The ``stillroom`` command: ``serve`` and ``migrate`` (``_main``), and one module per group of
admin verbs (captures, datasets, jobs, evals, aliases, promotions, cycles, rules, overview,
validate, spool), each straight on the configured store or spool folder.
"""

from proxy.cli._main import main

__all__ = ["main"]
