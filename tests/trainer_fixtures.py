"""Shared test helper for interrupted trainings (the resume tests of several modules)."""

from __future__ import annotations

import pytest


def fit_interrupted(trainer, epoch: int) -> None:
    """Run ``trainer.fit()`` and stop it with KeyboardInterrupt when epoch ``epoch`` starts, as a kill
    during that epoch would: the checkpoint of epoch ``epoch - 1`` is what remains to resume from."""
    run_epoch = trainer._run_epoch

    def stop(e, source, n):
        if e == epoch:
            raise KeyboardInterrupt
        return run_epoch(e, source, n)

    trainer._run_epoch = stop
    with pytest.raises(KeyboardInterrupt):
        trainer.fit()
