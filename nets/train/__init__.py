"""Training: a whole run and resuming one (run.py; its options, recipes and their merge in settings.py, its outputs in
paths.py), the loop (loop.py), the engine interface and the nets engine, which is the training step (engine.py),
the step captured as a CUDA graph (graph.py), CPU data parallelism (parallel.py)."""
