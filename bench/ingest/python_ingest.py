#!/usr/bin/python3
"""The pydicom + Pillow equivalent of `cx-ingest [--size N] FILES... > out.tar`, for bench/ingest:
DICOM through pydicom (modality LUT, the header's first window with the PS3.3 LINEAR function or
min-max, MONOCHROME1 inverted, rounded to 8 bits), PNG through Pillow (convert("L")), then Pillow's
bicubic resize of the shorter side and a PNG (zlib level 1, as cx-ingest writes) plus a JSON member
per record into a tar. One process, as such a script is usually written.

  python_ingest.py OUT.tar SIZE FILE...     (SIZE 0 keeps the size)"""
import io, json, os, sys, tarfile, time
import numpy as np
import pydicom
from pydicom.pixel_data_handlers.util import apply_modality_lut
from PIL import Image


def render_dicom(path):
    ds = pydicom.dcmread(path)
    x = apply_modality_lut(ds.pixel_array, ds).astype(np.float64)
    wc, ww = ds.get("WindowCenter"), ds.get("WindowWidth")
    if wc is not None and ww is not None:
        c = float(wc[0] if isinstance(wc, pydicom.multival.MultiValue) else wc)
        w = float(ww[0] if isinstance(ww, pydicom.multival.MultiValue) else ww)
    else:
        lo, hi = x.min(), x.max()
        c, w = (lo + hi + 1) / 2, hi - lo + 1
    y = np.clip(((x - (c - 0.5)) / (w - 1) + 0.5), 0, 1) * 255 if w > 1 else (x > c - 0.5) * 255.0
    y = np.floor(y + 0.5)
    if ds.PhotometricInterpretation == "MONOCHROME1":
        y = 255 - y
    meta = {"width": int(ds.Columns), "height": int(ds.Rows), "window": [c, w],
            "view": str(ds.get("ViewPosition", ""))}
    return Image.fromarray(y.astype(np.uint8)), meta


def add(tf, name, data):
    ti = tarfile.TarInfo(name)
    ti.size = len(data)
    tf.addfile(ti, io.BytesIO(data))


def main():
    out, size, files = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
    t0 = time.perf_counter()
    with tarfile.open(out, "w", format=tarfile.USTAR_FORMAT) as tf:
        add(tf, "__cx__", b"{}")
        for path in files:
            key = os.path.splitext(os.path.basename(path))[0].replace(".", "_")
            if path.lower().endswith((".dcm", ".dicom")):
                im, meta = render_dicom(path)
            else:
                im = Image.open(path).convert("L")
                meta = {"width": im.width, "height": im.height}
            if size:
                w, h = im.size
                if w <= h:
                    nw, nh = size, int(size * h / w)
                else:
                    nw, nh = int(size * w / h), size
                im = im.resize((nw, nh), Image.BICUBIC)
            buf = io.BytesIO()
            im.save(buf, format="PNG", compress_level=1)
            add(tf, key + ".json", json.dumps(meta).encode())
            add(tf, key + ".png", buf.getvalue())
        add(tf, "__end__", json.dumps({"records": len(files)}).encode())
    print(f"{time.perf_counter() - t0:.6f}")


if __name__ == "__main__":
    main()
