#!/usr/bin/python3
"""Independent parses of the real dataset label files, for tests/unit/data_adapters_test.cpp and
tests/cli/cx-ingest.bats. Python's csv module (not cx's reader) reads the files; the output is one
JSON object per record, in the order cx's adapters promise (label-file order, first appearance).

  adapter_reference.py chexpert FILE N     first N rows: path, labels (1/0/-1/None), view, sex, age
  adapter_reference.py nih FILE [N]        image, labels (0/1 over nih14), view, sex, age, boxes
                                           (BBox_List_2017.csv.gz beside FILE, when there)
  adapter_reference.py rsna FILE           patientId, target, boxes
  adapter_reference.py vindr FILE          image_id, votes {rad: sorted classes}, majority labels
  adapter_reference.py iu XML...           uId, findings, impression, parentImage ids
FILE may be .gz or .zip (one member)."""
import csv, gzip, io, json, sys, zipfile
import xml.etree.ElementTree as ET

CHEXPERT14 = ["No Finding", "Enlarged Cardiomediastinum", "Cardiomegaly", "Lung Opacity", "Lung Lesion", "Edema",
              "Consolidation", "Pneumonia", "Atelectasis", "Pneumothorax", "Pleural Effusion", "Pleural Other",
              "Fracture", "Support Devices"]
NIH14 = ["Atelectasis", "Cardiomegaly", "Effusion", "Infiltration", "Mass", "Nodule", "Pneumonia", "Pneumothorax",
         "Consolidation", "Edema", "Emphysema", "Fibrosis", "Pleural_Thickening", "Hernia"]
VINDR = ["Aortic enlargement", "Atelectasis", "Calcification", "Cardiomegaly", "Consolidation", "ILD", "Infiltration",
         "Lung Opacity", "Nodule/Mass", "Other lesion", "Pleural effusion", "Pleural thickening", "Pneumothorax",
         "Pulmonary fibrosis", "No finding"]


def open_text(path):
    if path.endswith(".gz"):
        return io.TextIOWrapper(gzip.open(path), encoding="utf-8", newline="")
    if path.endswith(".zip"):
        z = zipfile.ZipFile(path)
        return io.TextIOWrapper(z.open(z.namelist()[0]), encoding="utf-8", newline="")
    return open(path, encoding="utf-8", newline="")


def out(obj):
    sys.stdout.write(json.dumps(obj) + "\n")


def chexpert(path, n):
    for i, row in enumerate(csv.DictReader(open_text(path))):
        if i >= n:
            break
        labels = {c: (None if row[c] == "" else int(float(row[c]))) for c in CHEXPERT14}
        view = "LATERAL" if row["Frontal/Lateral"] == "Lateral" else (row["AP/PA"] or "FRONTAL")
        sex = {"Male": "M", "Female": "F"}.get(row["Sex"])
        out({"path": row["Path"], "labels": labels, "view": view, "sex": sex, "age": int(row["Age"])})


def nih(path, n):
    import os
    boxes = {}
    bb = os.path.join(os.path.dirname(path), "BBox_List_2017.csv.gz")
    if os.path.exists(bb):
        for i, row in enumerate(csv.reader(open_text(bb))):
            if i > 0:
                boxes.setdefault(row[0], []).append([float(v) for v in row[2:6]])
    for i, row in enumerate(csv.reader(open_text(path))):
        if i == 0:
            continue  # header (its OriginalImage[Width,Height] splits into two columns)
        if n and i > n:
            break
        found = set(row[1].split("|")) - {"No Finding"}
        assert found <= set(NIH14), found
        out({"image": row[0], "labels": {c: int(c in found) for c in NIH14}, "view": row[6], "sex": row[5],
             "age": int(row[4]), "patient": row[3], "boxes": boxes.get(row[0], [])})


def rsna(path):
    order, recs = [], {}
    for row in csv.DictReader(open_text(path)):
        pid = row["patientId"]
        if pid not in recs:
            order.append(pid)
            recs[pid] = {"patientId": pid, "target": int(row["Target"]), "boxes": []}
        if row["x"]:
            recs[pid]["boxes"].append([float(row[k]) for k in ("x", "y", "width", "height")])
    for pid in order:
        out(recs[pid])


def vindr(path):
    order, recs = [], {}
    for row in csv.DictReader(open_text(path)):
        iid = row["image_id"]
        if iid not in recs:
            order.append(iid)
            recs[iid] = {"votes": {}, "boxes": 0}
        recs[iid]["votes"].setdefault(row["rad_id"], set()).add(row["class_name"])
        if row["x_min"]:
            recs[iid]["boxes"] += 1
    for iid in order:
        votes = recs[iid]["votes"]
        n = len(votes)
        labels = {c: int(sum(c in v for v in votes.values()) * 2 > n) for c in VINDR}
        out({"image_id": iid, "votes": {r: sorted(v) for r, v in votes.items()}, "labels": labels,
             "boxes": recs[iid]["boxes"]})


def iu(paths):
    for p in paths:
        root = ET.parse(p).getroot()
        rec = {"id": root.find("uId").get("id"), "images": [e.get("id") for e in root.iter("parentImage")]}
        for a in root.iter("AbstractText"):
            if a.get("Label") in ("FINDINGS", "IMPRESSION") and a.text and a.text.strip():
                rec[a.get("Label").lower()] = " ".join(a.text.split())
        out(rec)


if __name__ == "__main__":
    kind = sys.argv[1]
    if kind == "chexpert":
        chexpert(sys.argv[2], int(sys.argv[3]))
    elif kind == "nih":
        nih(sys.argv[2], int(sys.argv[3]) if len(sys.argv) > 3 else 0)
    elif kind == "rsna":
        rsna(sys.argv[2])
    elif kind == "vindr":
        vindr(sys.argv[2])
    elif kind == "iu":
        iu(sys.argv[2:])
    else:
        sys.exit("unknown kind " + kind)
