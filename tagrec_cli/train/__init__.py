"""`tagrec train`, in the order a run goes through it:

    run.py          what a run holds (Run) and returns (TrainResult)
    prepare.py      before the first step: model, tables, pairs, frozen encoding, optimizer
    prefix.py       short-history users made from real users' first ratings (training only)
    batches.py      the pairs as token-table rows, each epoch's batches, length groups (numpy)
    plan.py         every step's inputs of an epoch, prepared at once, one epoch ahead
    step.py         the plan on the device (Feed), one optimisation step, validation (torch)
    distributed.py  the process group and collectives under torchrun (no-ops otherwise)
    checkpoint.py   the best epoch saved to a staging folder, moved in at the end
    loop.py         run_train: setup, epochs, validation, save, finish
"""

from tagrec_cli.train.loop import TrainResult, run_train

__all__ = ["TrainResult", "run_train"]
