#!/usr/bin/python3
"""Writes tests/data/eval/*.json, the references for tests/unit/metrics_test.cpp.

Run with Debian's /usr/bin/python3 (scikit-learn, scipy, numpy, nltk):
    /usr/bin/python3 tests/make_eval_goldens.py
Every number comes from an independent implementation: scikit-learn's roc_auc_score,
average_precision_score and roc_curve; numpy.percentile; medpy's hd95 algorithm written out with
scipy.ndimage (medpy itself is not packaged in Debian); NLTK's corpus_bleu on the tokens of
tests/eval_reference.coco_tokenize.
"""
import json
import os
import sys

import numpy as np
from nltk.translate.bleu_score import corpus_bleu
from scipy.ndimage import binary_erosion, distance_transform_edt, generate_binary_structure
from sklearn.metrics import average_precision_score, roc_auc_score, roc_curve

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from eval_reference import coco_tokenize  # noqa: E402

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "eval")


def classification_cases():
    rng = np.random.default_rng(20240501)
    cases = []

    def add(name, y, s):
        y = np.asarray(y, dtype=int)
        s = np.asarray(s, dtype=float)
        fpr, tpr, thr = roc_curve(y, s, drop_intermediate=False)
        j = int(np.argmax(tpr - fpr))
        pred = s >= 0.5
        cases.append({
            "name": name,
            "truth": y.tolist(),
            "scores": s.tolist(),
            "auroc": roc_auc_score(y, s),
            "average_precision": average_precision_score(y, s),
            # thr[0] is sklearn 1.2's max+1 (newer: inf); compared from index 1 on.
            "roc_fpr": fpr.tolist(),
            "roc_tpr": tpr.tolist(),
            "roc_thresholds": thr[1:].tolist(),
            "youden_threshold": None if j == 0 else float(thr[j]),
            "confusion_at_0_5": {
                "tp": int(np.sum(pred & (y == 1))), "fp": int(np.sum(pred & (y == 0))),
                "tn": int(np.sum(~pred & (y == 0))), "fn": int(np.sum(~pred & (y == 1))),
            },
        })

    add("sklearn_doc_example", [0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8])
    y = rng.integers(0, 2, 200)
    add("continuous", y, rng.normal(0.7 * y, 1.0))
    y = rng.integers(0, 2, 300)
    add("ties_one_decimal", y, np.round(rng.normal(0.6 * y, 1.0), 1))
    y = (rng.random(120) < 0.2).astype(int)
    add("coarse_integer_scores", y, rng.integers(0, 5, 120) + y)
    y = rng.integers(0, 2, 50)
    add("all_tied", y, np.full(50, 0.5))
    add("separable", [0, 0, 0, 1, 1], [0.1, 0.2, 0.3, 0.7, 0.9])
    add("reversed", [1, 1, 0, 0, 0], [0.1, 0.2, 0.3, 0.7, 0.9])
    y = (rng.random(400) < 0.05).astype(int)
    add("rare_positives_ties", y, np.round(rng.random(400) + 0.3 * y, 2))
    return cases


def percentile_cases():
    rng = np.random.default_rng(7)
    out = []
    for n in (1, 2, 7, 500, 499):
        v = rng.normal(size=n)
        out.append({"values": v.tolist(),
                    "q": [2.5, 25.0, 50.0, 97.5, 100.0],
                    "expected": [float(np.percentile(v, q)) for q in (2.5, 25.0, 50.0, 97.5, 100.0)]})
    return out


def medpy_hd95(truth, pred):
    fp = generate_binary_structure(2, 1)

    def surface(result, reference):
        rb = result ^ binary_erosion(result, structure=fp, iterations=1)
        refb = reference ^ binary_erosion(reference, structure=fp, iterations=1)
        return distance_transform_edt(~refb)[rb]

    return float(np.percentile(np.hstack((surface(pred, truth), surface(truth, pred))), 95))


def hd95_cases():
    rng = np.random.default_rng(11)
    cases = []
    h, w = 40, 56
    yy, xx = np.mgrid[0:h, 0:w]

    def add(name, a, b):
        cases.append({"name": name, "width": w, "height": h,
                      "truth": a.astype(int).ravel().tolist(), "pred": b.astype(int).ravel().tolist(),
                      "hd95": medpy_hd95(a, b),
                      "dice": float(2 * np.sum(a & b) / (a.sum() + b.sum())),
                      "iou": float(np.sum(a & b) / np.sum(a | b))})

    disc = (yy - 20) ** 2 + (xx - 25) ** 2 <= 100
    shifted = (yy - 23) ** 2 + (xx - 29) ** 2 <= 121
    add("two_discs", disc, shifted)
    box = (yy >= 0) & (yy < 15) & (xx >= 40)  # touches the top and right borders
    add("border_box_vs_disc", box, disc)
    blob = np.zeros((h, w), bool)
    for _ in range(6):
        cy, cx, r = rng.integers(5, h - 5), rng.integers(5, w - 5), rng.integers(2, 7)
        blob |= (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
    noisy = blob ^ (rng.random((h, w)) < 0.03)
    add("blobs_vs_noisy", blob, noisy)
    single = np.zeros((h, w), bool)
    single[5, 7] = True
    add("single_pixel_vs_disc", single, disc)
    full = np.ones((h, w), bool)
    add("full_image_vs_box", full, box)
    return cases


BLEU_CORPUS = [
    ("The heart size is normal. No pleural effusion or pneumothorax.",
     ["Heart size is normal. There is no pleural effusion or pneumothorax.",
      "Normal heart size; no effusion."]),
    ("There's a 2.5 cm nodule in the right upper lobe (RUL); can't exclude malignancy.",
     ["A 2.5 cm right upper lobe nodule is present, malignancy cannot be excluded."]),
    ("Lungs are clear today.",
     ["The lungs are clear bilaterally without focal consolidation.", "The lungs are clear and expanded."]),
    ("Mild cardiomegaly with small bilateral effusions and pulmonary vascular congestion, consistent with CHF.",
     ["Cardiomegaly with pulmonary vascular congestion and small bilateral pleural effusions, likely CHF."]),
    ("No acute cardiopulmonary abnormality. Stable x-ray appearance of the chest.",
     ["No acute cardiopulmonary process.", "No acute cardiopulmonary abnormality."]),
    ("Right PICC line tip in the SVC; no pneumothorax, 1,000 thanks: 10:30 AM.",
     ["Right-sided PICC with tip in the SVC. No pneumothorax."]),
]


def bleu_case():
    hyps = [coco_tokenize(h) for h, _ in BLEU_CORPUS]
    refs = [[coco_tokenize(r) for r in rs] for _, rs in BLEU_CORPUS]
    weights = [(1.0,), (0.5, 0.5), (1 / 3, 1 / 3, 1 / 3), (0.25, 0.25, 0.25, 0.25)]
    return {
        "hypotheses": [h for h, _ in BLEU_CORPUS],
        "references": [rs for _, rs in BLEU_CORPUS],
        "hypothesis_tokens": hyps,
        "reference_tokens": refs,
        "nltk_corpus_bleu": [corpus_bleu(refs, hyps, weights=wt) for wt in weights],
        # The first record alone (c > r for its closest reference: no brevity penalty) and the third
        # alone (c = 4 < r = 6: brevity penalty exp(1 - 6/4)). Every hypothesis has at least 4 tokens:
        # for a shorter one NLTK counts a denominator of 1 where pycocoevalcap (and cx) count 0.
        "nltk_record0": [corpus_bleu(refs[:1], hyps[:1], weights=wt) for wt in weights[:2]],
        "nltk_record2_bleu1": corpus_bleu([refs[2]], [hyps[2]], weights=(1.0,)),
    }


def main():
    os.makedirs(OUT, exist_ok=True)
    goldens = {
        "classification.json": classification_cases(),
        "percentile.json": percentile_cases(),
        "hd95.json": hd95_cases(),
        "bleu.json": bleu_case(),
    }
    for name, data in goldens.items():
        with open(os.path.join(OUT, name), "w") as f:
            json.dump(data, f, indent=None, separators=(",", ":"))
            f.write("\n")
        print("wrote", os.path.join(OUT, name))


if __name__ == "__main__":
    main()
