"""Training: a whole run (run.py; its options in settings.py, its outputs in paths.py, resuming in resume.py), the
loop (loop.py), the engine interface and the nets engine (engine.py), one training step (step.py), CPU data
parallelism, recipes."""
