"""Evaluation: progressive scoring against labels (the simulator's ground truth, NAB)."""
