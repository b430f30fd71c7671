"""Short scripts, one idea each; run them from the repository root (``python -m examples.NAME``)."""
