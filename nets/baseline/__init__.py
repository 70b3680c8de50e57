"""The PyTorch twin: the same models in torch, its engine, PyTorch state_dict interop (the only wing, with bench/, that imports torch)."""
