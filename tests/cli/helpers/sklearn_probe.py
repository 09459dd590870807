#!/usr/bin/python3
"""scikit-learn's logistic regression as the reference for cx-classify's linear probe.

  sklearn_probe.py auroc TRAIN.cx TEST.cx [FIELD] [C]
      standardises FIELD.npy (default cx5) with StandardScaler fitted on TRAIN, fits one
      LogisticRegression(C, lbfgs, max_iter 1000) per label on the cells coded 1 or 0 (uncertain
      cells left out, blank cells read as 0: cx-classify's default policy), and prints TSV
      "label<TAB>auroc" for each label whose TEST cells coded 1 or 0 hold both classes, then
      "macro<TAB>mean": what `cx-eval auroc` reports for cx-classify's predictions.
  sklearn_probe.py synth N F L SEED OUT.tar
      writes a plain WebDataset tar of N records with cx5.npy (float32 [F]) and .json labels
      L0..L{L-1} (0/1) from a latent linear model: features = latent @ A + noise, each label a
      logistic function of a few latents. The model is fixed (for F and L); SEED draws the records,
      so streams of other seeds are train/test splits of one population. For speed and memory runs
      at sizes phantoms do not reach.
Reads streams with the standard library's tarfile and numpy only (independent of the C++ readers).
"""
import io
import json
import sys
import tarfile

import numpy as np


def read_stream(path, field):
    """Keys, features [N, F] and label values (dicts) of a cx stream or plain WebDataset tar."""
    header = {}
    records = {}
    order = []
    with tarfile.open(path, "r:*") as tf:
        for m in tf:
            if not m.isfile():
                continue
            name = m.name.rsplit("/", 1)[-1]
            data = tf.extractfile(m).read()
            if name == "__cx__":
                header = json.loads(data)
                continue
            if name.startswith("__"):
                continue
            key, ext = name.split(".", 1)
            if key not in records:
                records[key] = {}
                order.append(key)
            if ext == field + ".npy":
                records[key]["x"] = np.load(io.BytesIO(data)).astype(np.float32)
            elif ext == "json":
                records[key]["labels"] = json.loads(data).get("labels", {}) or {}
    x = np.stack([records[k]["x"] for k in order])
    labels = [records[k].get("labels", {}) for k in order]
    return header, x, labels


def code(v):
    """The cx label coding: 1, 0, -1, or None for blank."""
    if v is None:
        return None
    if isinstance(v, dict):
        v = v.get("value")
    return None if v is None else int(v)


def auroc(args):
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.preprocessing import StandardScaler

    train_path, test_path = args[0], args[1]
    field = args[2] if len(args) > 2 else "cx5"
    c = float(args[3]) if len(args) > 3 else 1.0
    header, xtr, ltr = read_stream(train_path, field)
    _, xte, lte = read_stream(test_path, field)
    names = header.get("labels") or sorted({k for d in ltr for k in d})
    scaler = StandardScaler().fit(xtr)
    xtr, xte = scaler.transform(xtr), scaler.transform(xte)
    values = []
    for name in names:
        ytr = [code(d.get(name)) for d in ltr]
        ytr = np.array([0 if v is None else v for v in ytr])  # blank -> 0
        keep = ytr != -1                                       # uncertain -> ignored
        yte = np.array([code(d.get(name)) for d in lte], dtype=object)
        used = np.array([v in (0, 1) for v in yte])
        if len(set(ytr[keep])) < 2 or used.sum() == 0 or len(set(yte[used])) < 2:
            continue
        model = LogisticRegression(C=c, max_iter=1000).fit(xtr[keep], ytr[keep])
        a = roc_auc_score(yte[used].astype(int), model.predict_proba(xte[used])[:, 1])
        values.append(a)
        print(f"{name}\t{a:.6f}")
    print(f"macro\t{np.mean(values):.6f}")


def synth(args):
    n, f, nl, seed, out = int(args[0]), int(args[1]), int(args[2]), int(args[3]), args[4]
    model = np.random.default_rng(20261205)
    k = 32
    a = model.standard_normal((k, f)).astype(np.float32) / np.sqrt(k)
    coef = model.standard_normal((nl, k)) * (model.random((nl, k)) < 0.2)
    bias = model.uniform(-2.5, 0.0, nl)
    rng = np.random.default_rng(seed)
    with tarfile.open(out, "w", format=tarfile.USTAR_FORMAT) as tf:
        def add(name, data):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))

        for start in range(0, n, 4096):
            m = min(4096, n - start)
            z = rng.standard_normal((m, k))
            x = (z @ a + 0.5 * rng.standard_normal((m, f))).astype(np.float32) * 3 + 1
            p = 1 / (1 + np.exp(-(z @ coef.T + bias)))
            y = (rng.random((m, nl)) < p).astype(int)
            for i in range(m):
                key = f"r{start + i:07d}"
                buf = io.BytesIO()
                np.save(buf, x[i])
                add(key + ".cx5.npy", buf.getvalue())
                add(key + ".json", json.dumps({"id": key, "labels": {f"L{j}": int(y[i, j]) for j in range(nl)}}).encode())


def main():
    if len(sys.argv) < 2 or sys.argv[1] not in ("auroc", "synth"):
        sys.exit(__doc__)
    {"auroc": auroc, "synth": synth}[sys.argv[1]](sys.argv[2:])


if __name__ == "__main__":
    main()
