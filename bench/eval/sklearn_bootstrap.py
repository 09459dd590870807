#!/usr/bin/python3
"""The reference side of bench/eval: the bootstrap a paper's evaluation script runs, with
scikit-learn. Resample the records with replacement (numpy), compute roc_auc_score per label (a
label with one class in the resample is skipped for it), average into the macro AUROC; report the
median and the 2.5/97.5 percentiles. Resamples are spread over --processes worker processes (the
same number of cores cx-eval gets) so the comparison is core for core.

Prints one line (to -o FILE or stdout): load_s bootstrap_s resamples macro_estimate median low high
"""
import argparse
import time
from multiprocessing import Pool

import numpy as np
from sklearn.metrics import roc_auc_score

Y = S = None


def _init(y, s):
    global Y, S
    Y, S = y, s


def _warm(_):
    return roc_auc_score([0, 1], [0.0, 1.0])


def _resample(b):
    rng = np.random.default_rng([12345, b])
    n = Y.shape[0]
    idx = rng.integers(0, n, n)
    aucs = []
    for j in range(Y.shape[1]):
        y, s = Y[idx, j], S[idx, j]
        if y.min() == y.max():
            return None
        aucs.append(roc_auc_score(y, s))
    return float(np.mean(aucs))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("table")
    ap.add_argument("--resamples", type=int, default=500)
    ap.add_argument("--processes", type=int, default=2)
    ap.add_argument("-o", dest="output", default="-")
    a = ap.parse_args()
    t0 = time.perf_counter()
    with open(a.table) as f:
        header = f.readline().rstrip("\n").split("\t")
    data = np.loadtxt(a.table, delimiter="\t", skiprows=1, usecols=range(1, len(header)), dtype=np.float64)
    L = (len(header) - 1) // 2
    y, s = data[:, :L].astype(np.int8), data[:, L:]
    estimate = float(np.mean([roc_auc_score(y[:, j], s[:, j]) for j in range(L)]))
    with Pool(a.processes, initializer=_init, initargs=(y, s)) as pool:
        pool.map(_warm, range(a.processes))  # worker start-up and imports are not the bootstrap's cost
        t1 = time.perf_counter()
        values = [v for v in pool.map(_resample, range(a.resamples), chunksize=1) if v is not None]
        t2 = time.perf_counter()
    lo, med, hi = np.percentile(values, [2.5, 50, 97.5])
    line = f"{t1 - t0:.3f} {t2 - t1:.3f} {len(values)} {estimate:.6f} {med:.6f} {lo:.6f} {hi:.6f}"
    if a.output == "-":
        print(line)
    else:
        with open(a.output, "w") as f:
            print(line, file=f)


if __name__ == "__main__":
    main()
