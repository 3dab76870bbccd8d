"""A torch-CPU backend whose process dies the first time it prepares a 1x1 case (a marker file
says it did): the planted worker crash of the --gpus and Ray tests.  A module of its own, so
that spawned workers and Ray workers import it by name."""

from __future__ import annotations

import os

from convbench.suites.plan import backends as B


class DiesOnce(B.TorchBackend):
    def __init__(self, marker: str, exit_code: int = 3):
        super().__init__("cpu")
        self.marker, self.exit_code = marker, exit_code

    def prepare(self, case, algorithm, dtype, layout, tensors, **kwargs):
        if "1x1" in case.shape and not os.path.exists(self.marker):
            open(self.marker, "w").close()
            os._exit(self.exit_code)
        return super().prepare(case, algorithm, dtype, layout, tensors)
