"""How many torch threads a single-process command uses (``train``, ``fit``, ``predict``, ``explain``, ``bench``).

Measured on the 2-core machine (issue 13; ``python benchmarks/threads.py``, docs/performance.md, "Threads"): a standard epoch
took 0.70x its one-thread time with 2 threads on an idle machine, but 1.7-2.6x its one-thread time with 2 threads
while another process kept one core busy (and 14.5x when the other process was a second torch process with 2
threads of its own); OpenMP's passive wait policy did not help (2 threads then took 1.13x the one-thread time even
on an idle machine). So the default, ``auto``, uses one thread per core that other processes leave free when the
command starts, and sweeps always train each run on one thread.
"""

from __future__ import annotations

import math
import os
import time

import torch

from explearn.errors import ConfigError

#: the environment variable that sets the default of ``--threads``
THREADS_ENV = "EXPLEARN_THREADS"


def busy_cores(seconds: float = 0.25) -> float:
    """How many cores other processes keep busy, measured over ``seconds`` from /proc/stat (all cores' busy time
    minus this process's own); NaN where the system does not report it."""
    def sample() -> tuple[float, float] | None:
        try:
            fields = [int(v) for v in open("/proc/stat").readline().split()[1:9]]
        except (OSError, ValueError):
            return None
        user, nice, system, _idle, _iowait, irq, softirq, steal = fields
        own = os.times()
        return ((user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK"),
                own.user + own.system)

    first = sample()
    tic = time.perf_counter()
    time.sleep(seconds)
    second = sample()
    if first is None or second is None:
        return float("nan")
    wall = time.perf_counter() - tic
    return max(0.0, ((second[0] - first[0]) - (second[1] - first[1])) / wall)


def choose_threads(value: str | int | None = None) -> int:
    """The thread count ``--threads`` asks for: an integer >= 1, or ``auto`` (default, also from
    ``$EXPLEARN_THREADS``): the cores other processes leave free now (``busy_cores``, rounded up), at least 1; all
    cores where that cannot be measured.

    Raises:
        ConfigError: a value that is neither ``auto`` nor an integer >= 1.
    """
    value = os.environ.get(THREADS_ENV, "auto") if value is None else value
    if str(value).strip().lower() == "auto":
        cores = os.cpu_count() or 1
        busy = busy_cores()
        return cores if math.isnan(busy) else max(1, cores - math.ceil(busy - 0.2))  # 0.2: noise of a short window
    try:
        n = int(value)
    except (TypeError, ValueError):
        n = 0
    if n < 1 or isinstance(value, bool):
        raise ConfigError(f"--threads: expected 'auto' or an integer >= 1, got {value!r}")
    return n


def use_threads(value: str | int | None = None) -> int:
    """Set torch's thread count by ``choose_threads``; returns it."""
    n = choose_threads(value)
    torch.set_num_threads(n)
    return n
