"""Accuracy: tasks (datasets + metrics), features and frozen probes, calibration, eval and sweeps."""
