"""Rows -> scores -> pairs, torch-free: the bundled world, annotation signals, sources, binarizing strategies,
the audit."""
