"""Benchmark of the stillroom proxy against a mock upstream and LiteLLM; run ``python -m bench``."""
