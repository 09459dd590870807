#!/usr/bin/python3
"""CheXmask's own RLE, in numpy (the decode/encode of the CheXmask-Database repository, rewritten):
1-based starts, row-major flattening. For tests/unit/data_rle_test.cpp; tests/cli/cx-segment.bats imports decode() and encode().

  chexmask_rle_reference.py DIR N
For each i < N reads DIR/mask_i.npy (uint8 H x W) and DIR/rle_i.txt (cx's encoding), and prints one
JSON line: {"i": i, "decoded_equal": <numpy decode of cx's RLE == mask>, "rle": <numpy encoding>}."""
import json, sys
import numpy as np


def decode(rle, height, width):
    mask = np.zeros(height * width, dtype=np.uint8)
    runs = np.array([int(x) for x in rle.split()], dtype=np.int64)
    for start, length in zip(runs[0::2], runs[1::2]):
        mask[start - 1:start - 1 + length] = 1
    return mask.reshape((height, width))


def encode(mask):
    pixels = np.concatenate([[0], (mask.flatten() > 0).astype(np.int8), [0]])
    runs = np.where(pixels[1:] != pixels[:-1])[0] + 1
    runs[1::2] -= runs[::2]
    return " ".join(str(x) for x in runs)


if __name__ == "__main__":
    d, n = sys.argv[1], int(sys.argv[2])
    for i in range(n):
        mask = np.load(f"{d}/mask_{i}.npy")
        rle = open(f"{d}/rle_{i}.txt").read()
        ok = bool(np.array_equal(decode(rle, *mask.shape), (mask > 0).astype(np.uint8)))
        print(json.dumps({"i": i, "decoded_equal": ok, "rle": encode(mask)}))
