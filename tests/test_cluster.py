"""Sweeps on a real Dask cluster (a scheduler and workers as processes on loopback) and the local worker pool: the
same records, a killed worker only delays its runs, a failing run is reported, resume, clear connection errors."""

from __future__ import annotations

import dataclasses
import json
import multiprocessing
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from explearn.cli import main
from explearn.errors import ClusterError
from explearn.execution import BACKENDS
from explearn.errors import ConfigError
from explearn.planning import plan_eval, plan_search
from explearn.reproduce import reproduce, resolve_cluster
from explearn.specs import load_specs
from explearn.store import RunStore
from explearn.sweep import RunSpec, run_sweep

TINY = {"n_train": 8, "n_val": 4, "n_test": 8, "image_size": 16}
SLOW = {"n_train": 256, "n_val": 8, "n_test": 8, "image_size": 32}  # about half a second per run on one thread
SPEC = """
dataset = "triangles"
methods = ["standard", "two_stage"]
seeds = 2
epochs = 1
data = { n_train = 32, n_val = 8, n_test = 16, image_size = 16 }
search = { two_stage = { lr_ratio = [1.0, 10.0] } }
"""


def tiny_run(method="standard", seed=0, data=TINY, epochs=1, **hp):
    return RunSpec.create("triangles", data, seed, method, hp, "small_cnn", {}, seed, epochs=epochs, curves="val")


def collection(folder: Path, cluster: str | None = None) -> Path:
    """A folder with one small spec (2 search runs, 4 evaluation runs) and ``_defaults.toml``."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "_defaults.toml").write_text(f'cluster = "{cluster}"\n' if cluster else "")
    (folder / "tiny.toml").write_text(SPEC)
    return folder


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class LocalDask:
    """A Dask scheduler and workers, each its own process as on a real cluster, on loopback; logs in ``folder``."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.address = f"tcp://127.0.0.1:{free_port()}"
        self.scheduler: subprocess.Popen | None = None
        self.workers: list[subprocess.Popen] = []
        self.client = None  # the tests' own client, to watch the cluster
        self._logs: list = []
        self._started = 0

    def _spawn(self, module: str, args: list[str], name: str) -> subprocess.Popen:
        log = open(self.folder / f"{name}.log", "wb")
        self._logs.append(log)
        return subprocess.Popen([sys.executable, "-m", f"distributed.cli.{module}", *args], stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)

    def start(self, workers: int) -> None:
        from distributed import Client

        port = self.address.rsplit(":", 1)[1]
        # --idle-timeout: a scheduler left behind by a killed test run goes away by itself
        self.scheduler = self._spawn("dask_scheduler", ["--host", "127.0.0.1", "--port", port, "--no-dashboard",
                                                        "--idle-timeout", "300"], "scheduler")
        self.client = Client(self.address, timeout=60, set_as_default=False)
        self.ensure_workers(workers)

    def ensure_workers(self, n: int) -> None:
        """Start workers until ``n`` live ones are registered (a test may have killed some)."""
        self.workers = [w for w in self.workers if w.poll() is None]
        while len(self.workers) < n:
            self.workers.append(self.start_worker())
        self.wait_for({w.pid for w in self.workers})

    def start_worker(self, *options: str) -> subprocess.Popen:
        self._started += 1
        # no nanny: the process killed is the worker itself; --death-timeout: orphans exit by themselves
        return self._spawn("dask_worker", [
            self.address, "--nworkers", "1", "--nthreads", "1", "--no-nanny", "--no-dashboard", "--host", "127.0.0.1",
            "--death-timeout", "60", "--name", f"worker-{self._started}", *options], f"worker-{self._started}")

    def wait_for(self, pids: set[int]) -> None:
        """Until the scheduler's workers are the processes ``pids``."""
        deadline = time.monotonic() + 60
        while self._registered() != pids:
            assert time.monotonic() < deadline, f"workers did not register; logs in {self.folder}"
            time.sleep(0.1)

    def _pids(self) -> dict[str, int]:
        """Worker address -> process id, for the workers the scheduler knows."""
        return self.client.run(os.getpid, on_error="ignore")

    def _registered(self) -> set[int]:
        return set(self._pids().values())

    def kill_busy_worker(self) -> list:
        """SIGKILL a worker that holds a task; returns the keys it held."""
        pids = self._pids()
        for addr, keys in self.client.processing().items():
            if keys:
                victim = next(w for w in self.workers if w.pid == pids[addr])
                victim.send_signal(signal.SIGKILL)
                victim.wait()
                return list(keys)
        return []

    def stop(self) -> None:
        if self.client is not None:
            self.client.close()
        procs = [p for p in [*self.workers, self.scheduler] if p is not None]
        for proc in procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for log in self._logs:
            log.close()


@pytest.fixture(scope="module")
def dask_cluster(tmp_path_factory):
    local = LocalDask(tmp_path_factory.mktemp("dask"))
    try:
        local.start(workers=2)
        yield local
    finally:  # also when starting failed half-way
        local.stop()


@pytest.fixture
def cluster(dask_cluster: LocalDask) -> LocalDask:
    dask_cluster.ensure_workers(2)
    return dask_cluster


def records(root: Path) -> dict[str, dict]:
    """Stored records by run id, without the wall-clock timings."""
    out = {}
    for path in root.glob("*/result.json"):
        record = json.loads(path.read_text())
        record["metrics"] = {k: v for k, v in record["metrics"].items() if not k.startswith("time/")}
        out[path.parent.name] = record
    return out


def test_a_cluster_sweep_stores_what_the_local_path_stores(cluster, tmp_path, monkeypatch):
    monkeypatch.delenv("EXPLEARN_CLUSTER", raising=False)
    specs = collection(tmp_path / "specs", cluster=cluster.address)  # the _defaults.toml entry
    _, local = reproduce(specs, "smoke", tmp_path / "local", workers=0, cluster="local", log=lambda _: None)

    def no_local_training(*args):
        raise AssertionError("trained locally")

    import explearn.pool  # noqa: F401  # registers the local backend

    monkeypatch.setitem(BACKENDS._items, "local", no_local_training)
    lines: list[str] = []
    _, remote = reproduce(specs, "smoke", tmp_path / "remote", log=lines.append)
    assert f"training on the Dask scheduler at {cluster.address}" in lines
    assert not local.failed and not remote.failed and len(local.trained) == 6
    assert sorted(remote.trained) == sorted(local.trained)
    ours, theirs = records(tmp_path / "local" / "runs"), records(tmp_path / "remote" / "runs")
    assert sorted(ours) == sorted(local.trained)
    assert ours == theirs  # one torch thread per run on both: bit-identical
    manifests = [json.loads((tmp_path / d / "manifest.json").read_text()) for d in ("local", "remote")]
    assert manifests[0]["entries"] == manifests[1]["entries"]


def test_a_failing_run_is_reported_and_the_others_finish(cluster, tmp_path):
    runs = [tiny_run(seed=s) for s in range(3)]
    bad = dataclasses.replace(runs[1], hparams={**runs[1].hparams, "lr": -1.0})  # valid until it trains
    store = RunStore(tmp_path)
    outcome = run_sweep([runs[0], bad, runs[2]], store, cluster=cluster.address)
    assert sorted(outcome.trained) == sorted([runs[0].run_id, runs[2].run_id])
    assert list(outcome.failed) == [bad.run_id]
    text = outcome.failed[bad.run_id]
    assert text.startswith("Traceback") and "ConfigError" in text and "lr must be positive" in text
    assert not store.is_done(bad.run_id) and (tmp_path / bad.run_id / "error.txt").read_text() == text
    assert json.loads((tmp_path / bad.run_id / "config.json").read_text()) == bad.config()


def test_resume_on_the_cluster_trains_only_what_is_missing(cluster, tmp_path, monkeypatch):
    runs = [tiny_run(m, s) for m in ("standard", "rrr") for s in (0, 1)]
    store = RunStore(tmp_path)
    assert len(run_sweep(runs, store, cluster=cluster.address).trained) == 4
    (tmp_path / runs[2].run_id / "done").unlink()
    again = run_sweep(runs, store, cluster=cluster.address)
    assert again.trained == [runs[2].run_id] and len(again.skipped) == 3
    mtimes = {p: p.stat().st_mtime_ns for p in tmp_path.glob("*/*")}

    def no_training(*args):
        raise AssertionError("a finished sweep contacted the scheduler")

    monkeypatch.setitem(BACKENDS._items, "dask", no_training)
    done = run_sweep(runs, store, cluster=cluster.address)
    assert not done.trained and sorted(done.skipped) == sorted(r.run_id for r in runs)
    assert mtimes == {p: p.stat().st_mtime_ns for p in tmp_path.glob("*/*")}


@pytest.mark.parametrize("backend", ["local", "dask"])
def test_a_killed_worker_only_delays_its_runs(backend, request, tmp_path):
    runs = [tiny_run(seed=s, data=SLOW, epochs=2) for s in range(6)]
    if backend == "dask":
        local = request.getfixturevalue("cluster")
        kill, address = local.kill_busy_worker, local.address
    else:
        address = None

        def kill():
            children = multiprocessing.active_children()  # the worker processes of the sweep's pool
            if not children:
                return []
            os.kill(children[0].pid, signal.SIGKILL)
            return [children[0].pid]

    killed: list = []
    counts: list[int] = []

    def killer() -> None:
        # once a run is stored, kill a worker the moment one holds a run (the sweep keeps one group per worker in
        # flight, so that concurrent launches share the work: between groups no worker may hold one)
        deadline = time.monotonic() + 60
        while not counts and time.monotonic() < deadline:
            time.sleep(0.01)
        while not any(killed) and len(counts) < len(runs) and time.monotonic() < deadline:
            killed.append(kill())
            time.sleep(0.01)

    def progress(done: int, total: int) -> None:
        counts.append(done)

    thread = threading.Thread(target=killer)
    thread.start()
    try:
        outcome = run_sweep(runs, RunStore(tmp_path), workers=2, progress=progress, cluster=address)
    finally:
        thread.join()
    assert any(killed), "the kill should hit a worker that holds a run"
    ids = sorted(r.run_id for r in runs)
    assert sorted(outcome.trained) == ids and not outcome.failed
    assert counts == list(range(1, 7))  # every run reported once
    assert sorted(p.parent.name for p in tmp_path.glob("*/done")) == ids
    assert not list(tmp_path.glob("*/.*")) and not list(tmp_path.glob("*/error.txt"))  # no half-written file
    for run_id in ids:
        assert json.loads((tmp_path / run_id / "result.json").read_text())["run"]["seed"] in range(6)


BLOCK_EXPLEARN = """
import sys

class Block:  # a worker without explearn
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "explearn":
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)

sys.meta_path.insert(0, Block())
"""


def test_a_worker_without_explearn_is_refused_before_anything_runs(cluster, tmp_path):
    (tmp_path / "block_explearn.py").write_text(BLOCK_EXPLEARN)
    bare = cluster.start_worker("--preload", str(tmp_path / "block_explearn.py"))
    try:
        cluster.wait_for({w.pid for w in cluster.workers} | {bare.pid})
        with pytest.raises(ClusterError, match="1 of the 3 workers .* cannot import explearn"):
            run_sweep([tiny_run()], RunStore(tmp_path / "runs"), cluster=cluster.address)
        assert not (tmp_path / "runs").exists()
    finally:
        bare.terminate()
        bare.wait(timeout=30)
    cluster.wait_for({w.pid for w in cluster.workers})


def test_an_unreachable_scheduler_is_a_clear_error(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("EXPLEARN_CLUSTER_TIMEOUT", "1")
    address = f"tcp://127.0.0.1:{free_port()}"  # nothing listens there
    start = time.perf_counter()
    with pytest.raises(ClusterError, match=f"cannot reach a Dask scheduler at '{address}' within 1 s"):
        run_sweep([tiny_run()], RunStore(tmp_path / "runs"), cluster=address)
    assert time.perf_counter() - start < 5
    with pytest.raises(ClusterError, match="unknown address scheme 'http'"):
        run_sweep([tiny_run()], RunStore(tmp_path / "runs"), cluster="http://127.0.0.1:8786")
    monkeypatch.setenv("EXPLEARN_CLUSTER", address)  # the command line, through the environment
    specs = collection(tmp_path / "specs")
    assert main(["reproduce", str(specs), "--preset", "smoke", "--out", str(tmp_path / "out")]) == 2
    assert f"cannot reach a Dask scheduler at '{address}'" in capsys.readouterr().err
    assert not list((tmp_path / "out" / "runs").glob("*/done"))


def test_without_distributed_the_error_says_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "distributed", None)  # import distributed -> ImportError
    with pytest.raises(ClusterError, match=r"an optional dependency: pip install 'explearn\[cluster\]'"):
        run_sweep([tiny_run()], RunStore(tmp_path), cluster="tcp://127.0.0.1:8786")


def test_the_cluster_entry_is_no_part_of_specs_or_run_ids(tmp_path, monkeypatch):
    monkeypatch.delenv("EXPLEARN_CLUSTER", raising=False)
    there = collection(tmp_path / "a", cluster="tcp://10.0.0.1:8786")
    plain = collection(tmp_path / "b")
    (spec_a,), (spec_b,) = load_specs(there, "smoke"), load_specs(plain, "smoke")
    assert "cluster" not in spec_a.raw and spec_a.raw == spec_b.raw
    ids = [[p.run.run_id for p in plan_search(s) + plan_eval(s, {})] for s in (spec_a, spec_b)]
    assert ids[0] == ids[1]
    assert resolve_cluster(None, there) == "tcp://10.0.0.1:8786" and resolve_cluster(None, plain) is None
    assert resolve_cluster("local", there) is None and resolve_cluster("tcp://h:1", plain) == "tcp://h:1"
    monkeypatch.setenv("EXPLEARN_CLUSTER", "tcp://10.0.0.2:8786")
    assert resolve_cluster(None, there) == "tcp://10.0.0.2:8786"
    (plain / "tiny.toml").write_text(SPEC + 'cluster = "tcp://10.0.0.1:8786"\n')
    with pytest.raises(ConfigError, match="belongs in the folder's _defaults.toml"):
        load_specs(plain, "smoke")
