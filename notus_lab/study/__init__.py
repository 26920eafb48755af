"""A sweep becomes a claim: reading runs, statistics and their calibration, cost, the report, external judges."""
