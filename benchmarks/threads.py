"""Thread policy probe (issue 13): s/epoch of standard training (triangles 500, small_cnn, training steps only)
with 1 or 2 torch threads and the active or passive OpenMP wait policy, on an idle machine and while another
process keeps one core busy. Each configuration runs in a fresh process (the wait policy is read when OpenMP
starts); configurations interleaved, 3 repeats, median reported with the ratio to one thread.

Usage: python benchmarks/threads.py   (about 2.5 minutes on 2 cores; run nothing else meanwhile)
"""
import itertools, os, statistics, subprocess, sys, time

CONFIGS = {"1 thread": {"OMP_NUM_THREADS": "1"},
           "2 threads, active wait": {"OMP_NUM_THREADS": "2", "OMP_WAIT_POLICY": "ACTIVE"},
           "2 threads, passive wait": {"OMP_NUM_THREADS": "2", "OMP_WAIT_POLICY": "PASSIVE"},
           "2 threads, default": {"OMP_NUM_THREADS": "2"}}
CODE = ("from explearn import datasets, train; d = datasets.triangles(n_train=500, seed=0);"
        "print(train(d, 'standard', 0, epochs=3, quiet=True).metrics['time/epoch_s'])")


def measure(env_extra):
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY")}
    env.update(env_extra)
    out = subprocess.run([sys.executable, "-c", CODE], env=env, capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def main():
    for scenario in ("idle", "one core busy"):
        busy = None
        if scenario != "idle":
            busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
            time.sleep(1)
        times = {name: [] for name in CONFIGS}
        for _ in range(3):
            for name, env in CONFIGS.items():
                times[name].append(measure(env))
        if busy:
            busy.kill()
        base = statistics.median(times["1 thread"])
        for name, values in times.items():
            print(f"| {scenario} | {name} | {statistics.median(values):.3f} | {statistics.median(values) / base:.2f} |"
                  f" {', '.join(f'{v:.3f}' for v in values)} |")


if __name__ == "__main__":
    main()
