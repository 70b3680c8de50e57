"""Checkpoints: one .npz file per save (no pickles), written atomically, checked on load, readable by PyTorch.

    save_checkpoint(path, model.state_dict(), model.config(), optimizer_state=..., epoch=..., ...)
    checkpoint = load_checkpoint(path)           # a Checkpoint; CheckpointError, one line, for any bad file
    model = restore_model(checkpoint, backend)   # built and loaded

Layout of a file (every entry a numpy array; strings are numpy unicode scalars):

    conv1.weight, conv1.bias, ...      the model's parameters under their PyTorch state_dict names
    meta/format      "nets-checkpoint"         meta/version   3
    meta/model_config  JSON of model.config()  meta/epoch, meta/step_in_epoch   int64
    meta/config      JSON: training settings   meta/metrics   JSON, the per-epoch history (optional)
    meta/rng_state, meta/epoch_rng_state       JSON of numpy bit_generator.state (optional)
    meta/images_in_epoch  int64, only where a run resumed mid-epoch with another batch size (optional)
    meta/dataset     "mnist" or "fashion-mnist"   meta/class_names  JSON list, the classes in output order
    meta/run_id      the run that wrote it; its metrics JSON's "run_id" is the same (optional)
    meta/data_checksums  JSON {IDX file name: MD5 of its content}, the data it was trained on (optional)
    optim/name       "sgd" or "adam"           optim/step     int64
    optim/hyperparameters  JSON                optim/<state name>/<parameter name>  arrays (exp_avg, ...)

Parameter names never contain "/", so they cannot collide with the meta/ and optim/ entries, and a PyTorch
model loads the file directly:

    arrays = numpy.load(path, allow_pickle=False)
    torch_model.load_state_dict({k: torch.from_numpy(arrays[k]) for k in torch_model.state_dict()})

    record.py   Checkpoint (what a file holds), CheckpointError, which files there are to read
    format.py   save_checkpoint, load_checkpoint: the layout above
    npz.py      an .npz read header first, so a small file never costs more memory than it declares
    checks.py   every field of a file checked before it is used
    restore.py  restore_model, restore_rng

PyTorch's own .pt files are read by nets/baseline/checkpoint.py (load_any_checkpoint reads either kind).
"""

from __future__ import annotations

from nets.checkpoint.format import FORMAT, VERSION, checkpoint_from_parameters, load_checkpoint, save_checkpoint
from nets.checkpoint.record import Checkpoint, CheckpointError, NonFiniteError, is_torch_file, require_file
from nets.checkpoint.restore import restore_model, restore_rng

__all__ = ["Checkpoint", "CheckpointError", "FORMAT", "NonFiniteError", "VERSION", "checkpoint_from_parameters",
           "is_torch_file", "load_checkpoint", "require_file", "restore_model", "restore_rng", "save_checkpoint"]
