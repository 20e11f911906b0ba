"""Training: the trainer and what it wires together (steps, devices, checkpoints, metrics)."""
