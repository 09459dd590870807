#!/usr/bin/python3
"""Bridges the Hugging Face fixtures and cx streams for cx-embed's Bats tests.

  hf_fixture_stream.py write CASES.safetensors OUT.tar
      a plain WebDataset tar (Python's tarfile, no __cx__): one record per image of every case,
      key <case>_<i>, field pixel_values.npy (f32 [3, H, W]) exactly as the fixture stores it.
  hf_fixture_stream.py check CASES.safetensors EMBEDDED.cx FIELD TOL
      compares each record's FIELD.npy (last_hidden_state or cls) with the fixture's expected
      last_hidden_state / pooler_output; prints the max abs difference; exit 1 above TOL.
Written with numpy and the standard library only (independent of the C++ readers).
"""
import io
import json
import struct
import sys
import tarfile

import numpy as np

DT = {"F32": np.float32, "F16": np.float16, "F64": np.float64, "I64": np.int64}


def load_safetensors(path):
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    base = 8 + n
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        b, e = info["data_offsets"]
        out[name] = np.frombuffer(data[base + b:base + e], dtype=DT[info["dtype"]]).reshape(info["shape"])
    return out


def cases(tensors):
    return sorted(k[len("pixel_values_"):] for k in tensors if k.startswith("pixel_values_"))


def write(cases_path, out_path):
    t = load_safetensors(cases_path)
    with tarfile.open(out_path, "w", format=tarfile.PAX_FORMAT) as tar:
        for c in cases(t):
            pv = t["pixel_values_" + c]
            for i in range(pv.shape[0]):
                buf = io.BytesIO()
                np.save(buf, np.ascontiguousarray(pv[i].astype(np.float32)))
                info = tarfile.TarInfo(f"{c}_{i}.pixel_values.npy")
                info.size = buf.tell()
                buf.seek(0)
                tar.addfile(info, buf)


def check(cases_path, stream_path, field, tol):
    t = load_safetensors(cases_path)
    got = {}
    with tarfile.open(stream_path, "r") as tar:
        for m in tar.getmembers():
            if m.name.endswith("." + field + ".npy"):
                got[m.name.split(".")[0]] = np.load(io.BytesIO(tar.extractfile(m).read()))
    worst, n = 0.0, 0
    for c in cases(t):
        ref = t[("last_hidden_state_" if field == "last_hidden_state" else "pooler_output_") + c]
        for i in range(ref.shape[0]):
            key = f"{c}_{i}"
            if key not in got:
                print(f"missing record {key}")
                return 1
            if got[key].shape != ref[i].shape:
                print(f"{key}: shape {got[key].shape} != {ref[i].shape}")
                return 1
            worst = max(worst, float(np.abs(got[key].astype(np.float64) - ref[i]).max()))
            n += 1
    print(f"records {n} max_abs {worst:.3g}")
    return 0 if worst <= tol else 1


if __name__ == "__main__":
    if sys.argv[1] == "write":
        write(sys.argv[2], sys.argv[3])
    else:
        sys.exit(check(sys.argv[2], sys.argv[3], sys.argv[4], float(sys.argv[5])))
