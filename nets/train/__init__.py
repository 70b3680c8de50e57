"""Training: the loop, one training step, the engine the loop drives, CPU data parallelism, recipes, a whole run."""
