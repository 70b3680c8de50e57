"""nets: hand-written MLP and CNN training on NumPy or CuPy, in a few wings (the README's Layout is the map):

    data/  nn/  optim/  train/  checkpoint/  report/   the library, each wing importing only those before it
    baseline/                                          the PyTorch twin (built on train/, never the reverse)
    bench/                                             what scripts/bench.py measures
    outputs.py                                         output paths checked early, files written atomically
"""
