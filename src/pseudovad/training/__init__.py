"""Training: a method-agnostic loop (checkpoints, resume, NaN guard, metrics) and one module per method."""
