"""Learning-rate schedules: plain functions of the global step, shared by the nets and the torch baseline.

A schedule is a function of the step alone (not of state), so a resumed run picks up exactly where it stopped.
"""

from __future__ import annotations

import math

from nets.validate import whole

SCHEDULES = ("constant", "onecycle")


def constant_lr(peak_lr: float, step: int, total_steps: int) -> float:
    """The same learning rate at every step."""
    return peak_lr


def one_cycle_lr(peak_lr: float, step: int, total_steps: int, pct_start: float = 0.3,
                 div_factor: float = 25.0, final_div_factor: float = 1e4) -> float:
    """torch.optim.lr_scheduler.OneCycleLR's learning rate (cosine, two phases) at `step` (0-based).

    Warms up from peak/div_factor to peak over the first pct_start of the steps, then anneals by cosine
    to peak/(div_factor*final_div_factor). Momentum is not cycled. As OneCycleLR, a step past total_steps
    raises ValueError (the cycle is planned for total_steps; a longer run needs a new plan).
    """
    whole(total_steps, "total_steps")
    if step < 0 or step > total_steps:
        raise ValueError(f"step {step} is outside the one-cycle schedule of {total_steps} steps (0..{total_steps}); "
                         "plan the cycle for the whole run.")
    initial = peak_lr / div_factor
    final = initial / final_div_factor
    warmup_end = float(pct_start * total_steps) - 1
    last = total_steps - 1

    def cosine(start, end, fraction):
        return end + (start - end) / 2.0 * (math.cos(math.pi * fraction) + 1)

    if step <= warmup_end:
        return cosine(initial, peak_lr, step / warmup_end if warmup_end > 0 else 1.0)
    span = last - warmup_end
    return cosine(peak_lr, final, (step - warmup_end) / span if span > 0 else 1.0)


def learning_rate(schedule: str, peak_lr: float, step: int, total_steps: int) -> float:
    """The learning rate of `schedule` ("constant" or "onecycle") at global step `step`."""
    if schedule == "constant":
        return constant_lr(peak_lr, step, total_steps)
    if schedule == "onecycle":
        return one_cycle_lr(peak_lr, step, total_steps)
    raise ValueError(f"unknown schedule {schedule!r}; choose one of {', '.join(SCHEDULES)}")
