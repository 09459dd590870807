#!/usr/bin/python3
"""Writes the bench table: N records x L labels, truth NAME and score NAME.score (cx-eval's one-table
convention), deterministic from the seed. Prevalences 10% .. 36%, scores a noisy logistic of the truth."""
import sys

import numpy as np


def main():
    out, n, labels = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    rng = np.random.default_rng(20240501)
    y = (rng.random((n, labels)) < 0.10 + 0.02 * np.arange(labels)).astype(np.int8)
    s = 1 / (1 + np.exp(-(rng.normal(size=(n, labels)) + 1.2 * y - 1.5)))
    names = [f"Finding{i:02d}" for i in range(labels)]
    with open(out, "w") as f:
        f.write("key\t" + "\t".join(names) + "\t" + "\t".join(x + ".score" for x in names) + "\n")
        for i in range(n):
            f.write(f"r{i:06d}\t" + "\t".join(str(v) for v in y[i]) + "\t" +
                    "\t".join(f"{v:.5f}" for v in s[i]) + "\n")


if __name__ == "__main__":
    main()
