#!/usr/bin/python3
"""Writes tests/data/dicom_goldens.json: independent expectations for cx's DICOM decoding,
display pipeline and histogram equalisation, read by tests/unit/dicom_test.cpp and
tests/unit/image_window_test.cpp.

Run with Debian's Python (pydicom 2.3, Pillow 9.4, numpy):
    /usr/bin/python3 tests/data/make_dicom_goldens.py [SHARED_SAMPLES_DIR]
SHARED_SAMPLES_DIR defaults to ../shared/samples beside the repository.

The references, and why they are independent of cx:
- stored pixels: pydicom's pixel_array. Its JPEG baseline decode goes through Pillow/libjpeg-turbo
  (cx uses DCMTK's IJG code); its JPEG 2000 decode through Pillow's OpenJPEG binding (cx calls
  OpenJPEG itself, after its own fragment handling). The J2K frame is also decoded with the
  `opj_decompress` program and must agree exactly.
- display pipeline: pydicom's apply_modality_lut + apply_windowing (PS3.3 C.11.2.1.2) with the
  output range set to [0, 2^bits-1], then round half up and MONOCHROME1 inversion in numpy.
- equalisation: Pillow's ImageOps.equalize on 8-bit images.
Goldens are compact: sha256 of whole arrays, a coarse grid of pixels for diagnostics, a few
exact pixels, and equalisation as the input -> output table.
"""
import copy
import hashlib
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
import pydicom
from PIL import Image, ImageOps
from pydicom.encaps import generate_pixel_data_frame
from pydicom.pixel_data_handlers.util import apply_modality_lut, apply_windowing

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
SAMPLES = sys.argv[1] if len(sys.argv) > 1 else os.path.join(REPO, "..", "shared", "samples")
GRID = 64  # grid stride for the diagnostic pixel sample

FILES = [
    "siim/siim_cr_jpeg_baseline.dcm",
    "siim/siim_header_monochrome1.dcm",
    "nema/RG1_J2KI.dcm",
]


def sha(a, dtype):
    return hashlib.sha256(np.ascontiguousarray(a, dtype=dtype).tobytes()).hexdigest()


def opj_reference(ds):
    """Decodes frame 1 with the opj_decompress program (a second, tool-level reference)."""
    frame = next(generate_pixel_data_frame(ds.PixelData, 1))
    with tempfile.TemporaryDirectory() as tmp:
        j2k, pgm = os.path.join(tmp, "f.j2k"), os.path.join(tmp, "f.pgm")
        open(j2k, "wb").write(frame)
        subprocess.run(["opj_decompress", "-i", j2k, "-o", pgm], check=True, capture_output=True)
        data = open(pgm, "rb").read()
    # P5 header: magic, comment, "w h", maxval, then big-endian samples.
    fields, pos = [], 0
    while len(fields) < 4:
        end = data.index(b"\n", pos)
        line = data[pos:end]
        pos = end + 1
        if not line.startswith(b"#"):
            fields.extend(line.split())
    w, h, maxval = int(fields[1]), int(fields[2]), int(fields[3])
    return np.frombuffer(data[pos:], dtype=">u2" if maxval > 255 else "u1").reshape(h, w)


def render(ds, stored, bits, first_window):
    """Reference display pipeline: modality LUT, the header's first window (else min-max),
    round half up, MONOCHROME1 inversion."""
    y_max = 2 ** bits - 1
    modality = apply_modality_lut(stored, ds).astype(np.float64)
    # pydicom scales the window output to [0, 2^BitsStored-1] (unsigned, no rescale): present it
    # a dataset whose BitsStored is the output depth so that it writes our output range.
    voi = copy.deepcopy(ds)
    voi.BitsStored = bits
    voi.PixelRepresentation = 0
    for kw in ("RescaleSlope", "RescaleIntercept", "ModalityLUTSequence"):
        if kw in voi:
            delattr(voi, kw)
    if first_window is not None:
        source = "header"
        center, width = first_window
    else:
        source = "minmax"
        lo, hi = float(modality.min()), float(modality.max())
        center, width = (lo + hi + 1) / 2, hi - lo + 1
    voi.WindowCenter, voi.WindowWidth = center, width
    y = apply_windowing(modality, voi)
    out = np.clip(np.floor(y + 0.5), 0, y_max)
    inverted = ds.PhotometricInterpretation == "MONOCHROME1"
    if inverted:
        out = y_max - out
    out = out.astype(np.uint8 if bits == 8 else np.uint16)
    return out, {"source": source, "center": center, "width": width, "inverted": inverted}


def equalize_table(img8):
    """Pillow's ImageOps.equalize as the table input value -> output value over values present."""
    eq = np.asarray(ImageOps.equalize(Image.fromarray(img8, mode="L")))
    table = {}
    for v in np.unique(img8):
        outs = np.unique(eq[img8 == v])
        assert len(outs) == 1
        table[int(v)] = int(outs[0])
    return [[k, table[k]] for k in sorted(table)], hashlib.sha256(eq.tobytes()).hexdigest()


def synthetic8(w, h):
    """The same formula is in image_window_test.cpp: a skewed histogram with gaps."""
    y, x = np.mgrid[0:h, 0:w].astype(np.int64)
    v = ((x * x + 3 * y * y + x * y) * 7) % 97 + np.where(x > 40, 150, 0)
    return v.astype(np.uint8)


def file_golden(rel):
    path = os.path.join(SAMPLES, rel)
    ds = pydicom.dcmread(path)
    stored = ds.pixel_array
    tsuid = str(ds.file_meta.TransferSyntaxUID)
    g = {
        "path": rel,
        "transfer_syntax_uid": tsuid,
        "width": int(ds.Columns),
        "height": int(ds.Rows),
        "bits_allocated": int(ds.BitsAllocated),
        "bits_stored": int(ds.BitsStored),
        "signed": int(ds.PixelRepresentation) == 1,
        "photometric": str(ds.PhotometricInterpretation),
        "reference": "pydicom %s pixel_array (Pillow %s)" % (pydicom.__version__, Image.__version__),
        "stored_sha256_int32le": sha(stored, "<i4"),
        "stored_min": int(stored.min()),
        "stored_max": int(stored.max()),
        "stored_sum": int(stored.astype(np.int64).sum()),
        "grid_stride": GRID,
        "grid": stored[::GRID, ::GRID].astype(int).tolist(),
        "pixels": [[r, c, int(stored[r, c])] for r, c in
                   [(0, 0), (ds.Rows // 2, ds.Columns // 2), (ds.Rows - 1, ds.Columns - 1),
                    (ds.Rows // 3, ds.Columns // 5), (17, ds.Columns - 23)]],
    }
    if tsuid in ("1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.4.91"):
        opj = opj_reference(ds)
        assert np.array_equal(opj.astype(np.int64), stored.astype(np.int64)), "opj_decompress disagrees with pydicom"
        g["reference"] += "; opj_decompress agrees exactly"
    windows = None
    if "WindowCenter" in ds and "WindowWidth" in ds:
        wc, ww = ds.WindowCenter, ds.WindowWidth
        wc = wc[0] if isinstance(wc, pydicom.multival.MultiValue) else wc
        ww = ww[0] if isinstance(ww, pydicom.multival.MultiValue) else ww
        windows = (float(wc), float(ww))
    g["render"] = {}
    for bits in (8, 16):
        out, applied = render(ds, stored, bits, windows)
        g["render"][str(bits)] = dict(applied, sha256=sha(out, "<u2" if bits == 16 else "u1"),
                                      pixels=[[r, c, int(out[r, c])] for r, c, _ in g["pixels"]])
        if bits == 8:
            table, eq_sha = equalize_table(out)
            g["equalize8"] = {"table": table, "sha256": eq_sha}
    return g


def main():
    goldens = {
        "generator": "tests/data/make_dicom_goldens.py",
        "pydicom": pydicom.__version__,
        "pillow": Image.__version__,
        "files": [],
    }
    for rel in FILES:
        goldens["files"].append(file_golden(rel))
    syn = synthetic8(64, 48)
    table, eq_sha = equalize_table(syn)
    goldens["equalize_synthetic"] = {"width": 64, "height": 48, "table": table, "sha256": eq_sha}
    # A tiny image whose integer step rounds to 0 in Pillow (fewer than 256 pixels): unchanged.
    tiny = synthetic8(10, 10)
    t_table, t_sha = equalize_table(tiny)
    goldens["equalize_tiny"] = {"width": 10, "height": 10, "table": t_table, "sha256": t_sha}
    out = os.path.join(HERE, "dicom_goldens.json")
    with open(out, "w") as f:
        json.dump(goldens, f, separators=(",", ":"))
        f.write("\n")
    print("wrote", out, os.path.getsize(out), "bytes")


if __name__ == "__main__":
    main()
