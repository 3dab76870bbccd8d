"""Where :mod:`convbench.suites.static` compiles when this process cannot: clean worker processes.

Under ``TRITON_INTERPRET=1`` (tests, the CLI on a CPU machine) ``@triton.jit`` gives objects
that cannot be compiled, so compiles run in worker subprocesses started without it.  A spec
travels as its kernel's ``module`` + ``qualname`` (the worker imports the module itself) and the
rest of the spec pickled.  No ``__main__`` re-import (unlike multiprocessing's spawn), so any
caller works.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import importlib
import json
import os
import pickle
import subprocess
import sys
import tempfile
import threading
from typing import Callable

from .compile import compile_spec, raw_fn
from .result import StaticResult, target_name

_REPLY = "@@convbench-static@@ "
#: the worker's entry point, run as ``python -c`` (a module name held in a string)
WORKER_MAIN = f"from {__name__} import worker_main; worker_main()"


def encode_task(spec, ccs) -> str:
    raw = raw_fn(spec.fn)
    module, qualname = getattr(raw, "__module__", None), getattr(raw, "__qualname__", "")
    if not module or "<locals>" in qualname:
        raise ValueError(f"static spec {spec.name!r}: its kernel must be a module-level "
                         f"@triton.jit function, got {qualname or raw!r}")
    payload = (module, qualname, dataclasses.replace(spec, fn=None), list(ccs))
    return base64.b64encode(pickle.dumps(payload)).decode()


def _run_task(task: str) -> list:
    module, qualname, spec, ccs = pickle.loads(base64.b64decode(task))
    try:
        fn = importlib.import_module(module)
        for part in qualname.split("."):
            fn = getattr(fn, part)
    except Exception as exc:
        return [StaticResult(name=spec.name, target=target_name(cc),
                             error=f"{type(exc).__name__} finding {module}.{qualname}: {exc}") for cc in ccs]
    return compile_spec(dataclasses.replace(spec, fn=fn), ccs)


def worker_main() -> None:
    """Compile loop of one worker process: a task per stdin line, a reply line per task."""
    for line in sys.stdin:
        replies = [dict(r.to_dict(), compile_seconds=r.compile_seconds,
                        sass_text=base64.b64encode(r.sass_text).decode()) for r in _run_task(line.strip())]
        sys.stdout.write(_REPLY + json.dumps(replies) + "\n")
        sys.stdout.flush()


class Worker:
    """A fresh interpreter without TRITON_INTERPRET, seeing the same ``sys.path`` as this one."""

    def __init__(self):
        env = dict(os.environ)
        env.pop("TRITON_INTERPRET", None)
        env["PYTHONPATH"] = os.pathsep.join(p or os.getcwd() for p in sys.path)
        self.log = tempfile.TemporaryFile(mode="w+")
        self.proc = subprocess.Popen(
            [sys.executable, "-c", WORKER_MAIN],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log, env=env, text=True)

    def run(self, task: str, name: str, ccs) -> list:
        try:
            self.proc.stdin.write(task + "\n")
            self.proc.stdin.flush()
            for line in self.proc.stdout:
                if line.startswith(_REPLY):
                    replies = json.loads(line[len(_REPLY):])
                    for d in replies:
                        d["sass_text"] = base64.b64decode(d.get("sass_text", ""))
                    return [StaticResult.from_dict(d) for d in replies]
        except OSError:
            pass
        self.proc.wait()
        self.log.seek(0)
        tail = self.log.read()[-1500:]
        return [StaticResult(name=name, target=target_name(cc),
                             error=f"worker exited with status {self.proc.returncode}: {tail}") for cc in ccs]

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.proc.stdin.close()
        self.proc.wait()
        self.log.close()


def run_pool(tasks: list, jobs: int, done: Callable) -> None:
    """Run ``(spec, ccs, token)`` tasks on ``jobs`` workers; ``done(token, results)`` each."""
    queue = [(encode_task(spec, ccs), spec.name, ccs, token) for spec, ccs, token in reversed(tasks)]
    lock = threading.Lock()

    def drive():
        worker = Worker()
        try:
            while True:
                with lock:
                    if not queue:
                        return
                    task, name, ccs, token = queue.pop()
                results = worker.run(task, name, ccs)
                if worker.proc.poll() is not None:  # it died: later tasks get a new one
                    worker.close()
                    worker = Worker()
                with lock:
                    done(token, results)
        finally:
            worker.close()

    threads = [threading.Thread(target=drive, daemon=True) for _ in range(min(jobs, len(tasks)))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
