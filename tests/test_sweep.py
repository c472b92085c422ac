"""Sweeps: run ids, resume, failures that do not stop the sweep, and a kill at any moment losing nothing."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from explearn import execution
from explearn.execution import execute_run
from explearn.store import RunStore
from explearn.sweep import RunSpec, run_sweep

TINY = {"n_train": 8, "n_val": 4, "n_test": 8, "image_size": 16}


def tiny_run(method="standard", seed=0, **hp):
    return RunSpec.create("triangles", TINY, seed, method, hp, "small_cnn", {}, seed, epochs=1, curves="val")


def test_run_id_is_stable_and_ignores_spelled_out_defaults():
    assert tiny_run().run_id == tiny_run().run_id
    assert tiny_run("two_stage").run_id == tiny_run("two_stage", lr_ratio=1.0).run_id
    assert tiny_run("two_stage").run_id != tiny_run("two_stage", lr_ratio=10.0).run_id
    assert tiny_run(seed=0).run_id != tiny_run(seed=1).run_id
    assert len(tiny_run().run_id) == 16


def test_relaunched_sweep_skips_finished_runs(tmp_path):
    store = RunStore(tmp_path)
    runs = [tiny_run(m, s) for m in ("standard", "two_stage") for s in (0, 1)]
    first = run_sweep(runs[:3], store, workers=0)
    assert len(first.trained) == 3 and not first.skipped and not first.failed
    mtimes = {r: (tmp_path / r / "result.json").stat().st_mtime_ns for r in first.trained}
    second = run_sweep(runs + runs, store, workers=0)  # duplicates are trained once
    assert second.trained == [runs[3].run_id] and sorted(second.skipped) == sorted(first.trained)
    assert mtimes == {r: (tmp_path / r / "result.json").stat().st_mtime_ns for r in first.trained}
    stored = store.load(runs[0].run_id)
    assert stored["run"] == runs[0].config() and 0 <= stored["metrics"]["test/acc"] <= 1


def test_a_failing_run_is_recorded_and_the_sweep_goes_on(tmp_path, monkeypatch):
    store = RunStore(tmp_path)
    runs = [tiny_run(seed=s) for s in range(3)]
    bad = runs[1].run_id
    original = execution.execute_run

    def execute(run, quiet=True):
        if run.run_id == bad:
            raise RuntimeError("injected crash")
        return original(run, quiet)

    monkeypatch.setattr(execution, "execute_run", execute)
    outcome = run_sweep(runs, store, workers=0)
    assert sorted(outcome.trained) == sorted([runs[0].run_id, runs[2].run_id])
    assert "RuntimeError: injected crash" in outcome.failed[bad]
    assert not store.is_done(bad) and "injected crash" in (tmp_path / bad / "error.txt").read_text()
    assert json.loads((tmp_path / bad / "config.json").read_text()) == runs[1].config()

    monkeypatch.setattr(execution, "execute_run", original)
    again = run_sweep(runs, store, workers=0)  # the failed run is retried, the others are kept
    assert again.trained == [bad] and not again.failed
    assert not (tmp_path / bad / "error.txt").exists()


def test_worker_processes_give_the_same_records_as_in_process(tmp_path):
    runs = [tiny_run(m, 0) for m in ("standard", "rrr")]
    run_sweep(runs, RunStore(tmp_path / "a"), workers=0)
    run_sweep(runs, RunStore(tmp_path / "b"), workers=2)
    for run in runs:
        a, b = (json.loads((tmp_path / d / run.run_id / "result.json").read_text()) for d in "ab")
        assert a["history"] == b["history"] and a["predictions"] == b["predictions"]


SPEC = """
dataset = "triangles"
methods = ["standard", "two_stage"]
seeds = 6
epochs = 2
data = { n_train = 64, n_val = 16, n_test = 32, image_size = 16 }
"""


def test_a_sweep_killed_mid_run_loses_nothing_and_resumes(tmp_path):
    specs = tmp_path / "specs"
    specs.mkdir()
    (specs / "tiny.toml").write_text(SPEC)
    out = tmp_path / "report"
    cmd = [sys.executable, "-m", "explearn.cli", "reproduce", str(specs), "--preset", "smoke", "--out", str(out),
           "--workers", "0"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    runs = out / "runs"
    deadline = time.time() + 120
    while time.time() < deadline and len(list(runs.glob("*/done"))) < 3:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)  # at an arbitrary moment, possibly mid-write
    proc.wait()
    finished = {p.parent.name for p in runs.glob("*/done")}
    assert 3 <= len(finished) < 12, "the kill should land mid-sweep"
    for run_id in finished:  # every finished record is complete
        assert json.loads((runs / run_id / "result.json").read_text())["metrics"]
    for folder in runs.iterdir():  # and an unfinished one is never taken for finished
        assert (folder / "done").exists() == (folder.name in finished)

    again = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    assert f"{12 - len(finished)} runs trained, {len(finished)} reused, 0 failed" in again.stdout
    assert len(list(runs.glob("*/done"))) == 12


def test_a_stored_run_reruns_bit_identically(tmp_path, one_torch_thread):
    run = tiny_run("two_stage", 3)
    run_sweep([run], RunStore(tmp_path), workers=0)
    stored = RunStore(tmp_path).load(run.run_id)
    again = execute_run(RunSpec.from_config(stored["run"])).to_json()  # sweeps train with one thread, as this test does
    assert again["history"] == stored["history"] and again["predictions"] == stored["predictions"]


def _without_timing(record: dict) -> dict:
    record = json.loads(record)
    record["metrics"] = {k: v for k, v in record["metrics"].items() if not k.startswith("time/")}
    return record


def test_seeds_of_one_setting_train_together_and_equal_separate_runs():
    """An MLP (no convolutions, so stacking pays on a CPU) over three run seeds, each with its own data: one
    vectorised task, whose records equal those of the runs trained one by one."""
    from explearn.execution import execute_group, plan_groups, vectorized_key

    runs = [RunSpec.create("triangles", TINY, s, "two_stage", {}, "mlp", {}, s, epochs=2, curves="val")
            for s in (0, 1, 2)]
    assert vectorized_key(runs[0]) is not None and len({vectorized_key(r) for r in runs}) == 1
    assert vectorized_key(tiny_run()) is None or __import__("torch").cuda.is_available()  # a CNN on CPU: one by one
    groups = plan_groups(runs, slots=1)
    assert [len(g) for g in groups] == [3]
    together = execute_group(groups[0])
    alone = [execute_group([r])[0] for r in runs]
    for (rid, record, error), (rid2, record2, error2) in zip(together, alone):
        assert rid == rid2 and error is None and error2 is None
        assert json.loads(record)["metrics"]["time/vectorized"] == 3
        assert _without_timing(record) == _without_timing(record2)


def test_a_failing_run_in_a_vectorised_group_is_reported_alone():
    from explearn.execution import execute_group

    runs = [RunSpec.create("triangles", TINY, s, "standard", {}, "mlp", {}, s, epochs=1, curves="val") for s in (0, 1)]
    bad = RunSpec.create("triangles", TINY, 2, "standard", {"lr": 1e-3}, "mlp", {}, 2, epochs=1, curves="val")
    object.__setattr__(bad, "hparams", {**bad.hparams, "lr": -1.0})  # fails when training starts
    results = execute_group(runs + [bad])
    assert [error is None for _, _, error in results] == [True, True, False]
    assert "lr must be positive" in results[2][2]


def test_a_vectorised_group_that_raises_is_trained_run_by_run(monkeypatch):
    import explearn.vectorized
    from explearn.execution import execute_group

    def broken(*args, **kwargs):
        raise RuntimeError("out of memory for the stacked models")

    monkeypatch.setattr(explearn.vectorized, "train_many", broken)
    runs = [RunSpec.create("triangles", TINY, s, "standard", {}, "mlp", {}, s, epochs=1, curves="val") for s in (0, 1)]
    results = execute_group(runs)
    assert [error for _, _, error in results] == [None, None]
    assert all("time/vectorized" not in json.loads(record)["metrics"] for _, record, _ in results)


@pytest.mark.parametrize("args, run_id", [
    (("triangles", {"n_train": 500, "spurious_rate": 0.9, "n_val_oracle": 500}, 1000, "two_stage",
      {"lr_ratio": 0.1}, "small_cnn", {}, 1000, 30), "211b7e23d6e72bdf"),
    (("triangles", {"n_train": 500, "spurious_rate": 0.9, "n_val_oracle": 500, "mask_transform": "wrong"}, 1000,
      "rrr", {"lam": 1000.0}, "small_cnn", {}, 1000, 30), "f635d7919624d050"),
    (("triangles", {"n_train": 500, "spurious_rate": 0.9, "n_val_oracle": 500, "masks": "both",
                    "mask_transform": "random_place"}, 1000, "rrr", {"lam": 10.0}, "small_cnn", {}, 1000, 30),
     "8da6ca061a57238d"),
])
def test_run_ids_of_stored_runs_do_not_change(args, run_id):
    """The ids of runs stored by the full sweep of 2026-11-30 (reports/paper-full/runs, search runs of the
    spurious spec): a refactoring of the run configuration must keep them, or every stored run is trained again
    (issue 15). Options added since with a default stay out of the record unless set (resample, mask options)."""
    run = RunSpec.create(*args, batch_size=32, select="best_val", curves="val", attributions=0)
    assert run.run_id == run_id


def test_the_backends_register_themselves():
    """issue 15, item 2: the local pool and Dask register with the sweep (execution.BACKENDS); the sweep imports
    neither for anything else, and they import only execution, not the sweep."""
    import explearn.cluster  # noqa: F401
    import explearn.pool  # noqa: F401
    from explearn.execution import BACKENDS

    assert sorted(BACKENDS.names()) == ["dask", "local"]
    assert BACKENDS.get("local").__module__ == "explearn.pool"
    assert BACKENDS.get("dask").__module__ == "explearn.cluster"
