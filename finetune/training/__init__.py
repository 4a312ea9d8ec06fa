"""Training backends and jobs."""
