"""What every stage uses: the run dir's files, the one bad-input error, atomic redacted writes, provenance,
build-once caches, W&B."""
