"""`tagrec train`, in the order a run goes through it:

    batches.py      the pairs as token-table rows, each epoch's batches, length groups (numpy)
    plan.py         every step's inputs of an epoch, prepared at once (vectorised numpy)
    step.py         the plan on the device (Feed), one optimisation step, validation (torch)
    distributed.py  the process group and collectives under torchrun (no-ops otherwise)
    loop.py         run_train: setup, frozen encoding, epochs, save
"""

from tagrec_cli.train.loop import TrainResult, run_train

__all__ = ["TrainResult", "run_train"]
