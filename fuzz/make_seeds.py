#!/usr/bin/python3
"""Writes the small generated seed corpora of the fuzz targets into fuzz/corpus/<target>/.

Run with the reference Python (/usr/bin/python3: numpy, Pillow with OpenJPEG, pydicom):
    /usr/bin/python3 fuzz/make_seeds.py
Every seed is made here from nothing (tiny images, arrays, label rows invented for the purpose);
real samples are never copied: `make fuzz` reads ../shared/samples in place. Deterministic output,
so re-running it changes no committed file.
"""
import gzip
import io
import json
import os
import struct
import subprocess
import sys
import tarfile

import numpy as np
import pydicom
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.sequence import Sequence
from pydicom.uid import (ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian, JPEG2000,
                         JPEG2000Lossless, JPEGBaseline8Bit, RLELossless, DeflatedExplicitVRLittleEndian)

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "corpus")


def put(target, name, data):
    d = os.path.join(OUT, target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def gz(data):
    return gzip.compress(data if isinstance(data, bytes) else data.encode(), mtime=0)


def zst(data):
    return subprocess.run(["zstd", "-q", "-c", "--no-check"], input=data, stdout=subprocess.PIPE, check=True).stdout


def ramp(h, w, mod=256, dtype=np.uint8):
    return (np.arange(h * w).reshape(h, w) * 37 % mod).astype(dtype)


# --- images -----------------------------------------------------------------------------------
def png(im, **kw):
    b = io.BytesIO()
    im.save(b, format="PNG", **kw)
    return b.getvalue()


def jpeg(im, **kw):
    b = io.BytesIO()
    im.save(b, format="JPEG", **kw)
    return b.getvalue()


def j2k(im, kind="J2K", **kw):
    b = io.BytesIO()
    im.save(b, format="JPEG2000", no_jp2=(kind == "J2K"), **kw)
    return b.getvalue()


gray = Image.fromarray(ramp(6, 5))
gray16 = Image.fromarray(ramp(5, 4, 65536, np.uint16).astype(np.int32)).convert("I;16")
rgb = Image.fromarray(np.stack([ramp(4, 6), ramp(4, 6)[::-1], 255 - ramp(4, 6)], axis=2))
pngs = {
    "gray8.png": png(gray),
    "gray16.png": png(gray16),
    "rgb8.png": png(rgb),
    "palette.png": png(rgb.convert("P")),
    "gray_alpha.png": png(gray.convert("LA")),
    "rgba.png": png(rgb.convert("RGBA")),
    "bilevel.png": png(gray.convert("1")),
    "text_chunk.png": png(gray, pnginfo=__import__("PIL.PngImagePlugin", fromlist=["PngInfo"]).PngInfo()),
}
for name, data in pngs.items():
    put("png", name, data)
jpegs = {
    "gray.jpg": jpeg(gray, quality=90),
    "rgb420.jpg": jpeg(rgb, quality=90),
    "rgb444.jpg": jpeg(rgb, quality=95, subsampling=0),
    "progressive.jpg": jpeg(rgb, quality=80, progressive=True),
}
for name, data in jpegs.items():
    put("jpeg", name, data)
put("j2k", "gray8.j2k", j2k(gray))
put("j2k", "rgb8.j2k", j2k(rgb))
put("j2k", "gray16.j2k", j2k(gray16))
put("j2k", "gray8.jp2", j2k(gray, kind="JP2"))
put("j2k", "lossy.j2k", j2k(gray, quality_mode="rates", quality_layers=[4]))


# --- DICOM ------------------------------------------------------------------------------------
def dicom(pixels, ts=ExplicitVRLittleEndian, photometric="MONOCHROME2", bits=8, signed=False, frames=1,
          encoded=None, extra=None, preamble=True):
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1"
    meta.MediaStorageSOPInstanceUID = "1.2.3.4.5"
    meta.TransferSyntaxUID = ts
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "CR"
    ds.PatientSex = "F"
    ds.PatientAge = "061Y"
    ds.ViewPosition = "PA"
    ds.PixelSpacing = [0.2, 0.2]
    h, w = pixels.shape[-3:-1] if pixels.ndim == 4 or (pixels.ndim == 3 and photometric != "MONOCHROME2" and photometric != "MONOCHROME1") else pixels.shape[-2:]
    ds.Rows, ds.Columns = h, w
    ds.SamplesPerPixel = 3 if photometric in ("RGB", "YBR_FULL_422", "YBR_FULL") else 1
    if ds.SamplesPerPixel == 3:
        ds.PlanarConfiguration = 0
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated = 16 if bits > 8 else 8
    ds.BitsStored = bits
    ds.HighBit = bits - 1
    ds.PixelRepresentation = 1 if signed else 0
    if frames > 1:
        ds.NumberOfFrames = frames
    if extra:
        extra(ds)
    ds.is_little_endian = ts != ExplicitVRBigEndian
    ds.is_implicit_VR = ts == ImplicitVRLittleEndian
    if encoded is not None:
        ds.PixelData = encapsulate(encoded)
        ds["PixelData"].is_undefined_length = True
        ds["PixelData"].VR = "OB"
    else:
        ds.PixelData = pixels.tobytes() if ts != ExplicitVRBigEndian else pixels.astype(pixels.dtype.newbyteorder(">")).tobytes()
        ds["PixelData"].VR = "OW" if bits > 8 else "OB"
    b = io.BytesIO()
    if ts == DeflatedExplicitVRLittleEndian:
        ds.is_little_endian, ds.is_implicit_VR = True, False
    pydicom.dcmwrite(b, ds, write_like_original=not preamble)
    return b.getvalue()


def window(ds):
    ds.WindowCenter = 1000
    ds.WindowWidth = 2000
    ds.RescaleSlope = 2
    ds.RescaleIntercept = -1024


def luts(ds):
    lut = Dataset()
    lut.LUTDescriptor = [4, 0, 16]
    lut.add_new(0x00283006, "OW", struct.pack("<4H", 0, 1000, 30000, 65535))
    lut.LUTExplanation = "test"
    ds.VOILUTSequence = Sequence([lut])
    mod = Dataset()
    mod.LUTDescriptor = [4, 0, 16]
    mod.add_new(0x00283006, "OW", struct.pack("<4H", 10, 20, 30, 40))
    mod.ModalityLUTType = "US"
    ds.ModalityLUTSequence = Sequence([mod])


p8 = ramp(6, 5)
p12 = ramp(6, 5, 4096, np.uint16)
dcms = {
    "explicit8.dcm": dicom(p8),
    "implicit16_window.dcm": dicom(p12, ts=ImplicitVRLittleEndian, bits=12, extra=window),
    "signed16.dcm": dicom((p12.astype(np.int16) - 2048), bits=12, signed=True, photometric="MONOCHROME1"),
    "bigendian16.dcm": dicom(p12, ts=ExplicitVRBigEndian, bits=16),
    "luts16.dcm": dicom(p12, bits=16, extra=luts),
    "rgb.dcm": dicom(np.asarray(rgb), photometric="RGB"),
    "multiframe.dcm": dicom(np.stack([p8, p8[::-1]]), frames=2),
    "jpeg_baseline.dcm": dicom(p8, ts=JPEGBaseline8Bit, encoded=[jpeg(gray, quality=90)]),
    "j2k_lossless.dcm": dicom(p8, ts=JPEG2000Lossless, encoded=[j2k(gray)]),
    "j2k_16.dcm": dicom(p12, ts=JPEG2000, bits=16, encoded=[j2k(Image.fromarray(p12.astype(np.int32)).convert("I;16"))]),
    "no_preamble.dcm": dicom(p8, preamble=False),
}
try:
    from pydicom.pixel_data_handlers.rle_handler import rle_encode_frame
    dcms["rle.dcm"] = dicom(p8, ts=RLELossless, encoded=[rle_encode_frame(p8)])
except Exception as e:  # pydicom without the RLE encoder
    print("no RLE seed:", e, file=sys.stderr)
for name, data in dcms.items():
    put("dicom", name, data)
for name in ("explicit8.dcm", "j2k_lossless.dcm", "jpeg_baseline.dcm", "luts16.dcm"):
    put("image_file", name, dcms[name])
for name in ("gray8.png", "gray16.png", "rgb8.png"):
    put("image_file", name, pngs[name])
put("image_file", "rgb420.jpg", jpegs["rgb420.jpg"])


# --- record streams ---------------------------------------------------------------------------
def tar(members):
    b = io.BytesIO()
    with tarfile.open(fileobj=b, mode="w", format=tarfile.PAX_FORMAT) as t:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mtime = 0
            t.addfile(info, io.BytesIO(data))
    return b.getvalue()


def npy(a):
    b = io.BytesIO()
    np.save(b, a)
    return b.getvalue()


header = json.dumps({"format": "cx-stream", "version": "1.0", "fields": {"png": {}, "json": {}}, "labels": ["Edema"],
                     "provenance": [{"tool": "make_seeds"}]}).encode()
records = [("0001.json", b'{"labels":{"Edema":1}}'), ("0001.png", pngs["gray8.png"]),
           ("0001.cls.npy", npy(np.arange(4, dtype=np.float32))), ("0002.json", b'{"labels":{"Edema":null}}'),
           ("0002.png", pngs["gray16.png"])]
cx = tar([("__cx__", header)] + records + [("__end__", b'{"records": 2}')])
put("stream", "cx.tar", cx)
put("stream", "cx.tar.gz", gz(cx))
put("stream", "cx.tar.zst", zst(cx))
put("stream", "webdataset.tar", tar([("a/b/x1.png", pngs["gray8.png"]), ("a/b/x1.txt", b"hi"), ("README", b"")]))
put("stream", "longname.tar", tar([("d" * 120 + "/k.json", b"{}"), ("e" * 150 + ".json", b"{}")]))

# --- arrays and tensors -----------------------------------------------------------------------
put("npy", "f32_2x3.npy", npy(np.arange(6, dtype=np.float32).reshape(2, 3)))
put("npy", "f16.npy", npy(np.array([0.5, -2, 65504], dtype=np.float16)))
put("npy", "f64_scalar.npy", npy(np.float64(3.25)))
put("npy", "u8.npy", npy(np.arange(5, dtype=np.uint8)))
put("npy", "u16.npy", npy(np.arange(5, dtype=np.uint16)))
put("npy", "i32.npy", npy(np.arange(3, dtype=np.int32)))
put("npy", "i64_3d.npy", npy(np.arange(8, dtype=np.int64).reshape(2, 2, 2)))
put("npy", "bool.npy", npy(np.array([True, False])))
put("npy", "empty.npy", npy(np.zeros((0, 4), dtype=np.float32)))
v2 = npy(np.arange(2, dtype=np.float32))
put("npy", "v2.npy", b"\x93NUMPY\x02\x00" + struct.pack("<I", len(v2) - 10 - 8 + 2)[:4] + v2[10:] if False else
    b"\x93NUMPY\x02\x00" + struct.pack("<I", struct.unpack("<H", v2[8:10])[0]) + v2[10:])


def safetensors(tensors, metadata=None):
    head, data, off = {}, b"", 0
    for name, dtype, shape, raw in tensors:
        head[name] = {"dtype": dtype, "shape": shape, "data_offsets": [off, off + len(raw)]}
        data += raw
        off += len(raw)
    if metadata:
        head["__metadata__"] = metadata
    h = json.dumps(head).encode()
    h += b" " * (-len(h) % 8)
    return struct.pack("<Q", len(h)) + h + data


put("safetensors", "f32.safetensors", safetensors([("w", "F32", [2, 2], np.arange(4, dtype=np.float32).tobytes()),
                                                   ("b", "F32", [2], np.ones(2, dtype=np.float32).tobytes())],
                                                  {"format": "pt"}))
put("safetensors", "mixed.safetensors", safetensors([("a", "F16", [3], np.ones(3, dtype=np.float16).tobytes()),
                                                     ("b", "BF16", [1, 2], b"\x80\x3f\x00\x40"),
                                                     ("c", "I64", [1], struct.pack("<q", 7)),
                                                     ("d", "U8", [2], b"\x01\x02"),
                                                     ("e", "F64", [], struct.pack("<d", 1.5))]))
put("safetensors", "empty.safetensors", safetensors([]))

# --- JSON configs -----------------------------------------------------------------------------
put("vit_config", "dinov2_registers.json", json.dumps({
    "model_type": "dinov2_with_registers", "hidden_size": 384, "num_hidden_layers": 12, "num_attention_heads": 6,
    "mlp_ratio": 4, "num_register_tokens": 4, "patch_size": 14, "image_size": 518, "num_channels": 3,
    "layer_norm_eps": 1e-6, "hidden_act": "gelu", "use_swiglu_ffn": False, "layerscale_value": 1.0,
    "qkv_bias": True, "torch_dtype": "float32", "_name_or_path": "x"}, indent=2))
put("vit_config", "dinov2_swiglu.json", json.dumps({
    "model_type": "dinov2", "hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2, "patch_size": 16,
    "image_size": 64, "use_swiglu_ffn": True, "hidden_act": "silu", "dtype": "bfloat16"}))
put("llama_config", "tiny_llama.json", json.dumps({
    "architectures": ["LlamaForCausalLM"], "attention_bias": False, "attention_dropout": 0.0, "bos_token_id": 1,
    "eos_token_id": 2, "head_dim": 16, "hidden_act": "silu", "hidden_size": 64, "initializer_range": 0.02,
    "intermediate_size": 176, "max_position_embeddings": 256, "mlp_bias": False, "model_type": "llama",
    "num_attention_heads": 4, "num_hidden_layers": 2, "num_key_value_heads": 2, "pretraining_tp": 1,
    "rms_norm_eps": 1e-06, "rope_scaling": None, "rope_theta": 10000.0, "tie_word_embeddings": False,
    "torch_dtype": "float32", "use_cache": True, "vocab_size": 512}, indent=2))
put("llama_config", "llama1_mha_tied.json", json.dumps({
    "model_type": "llama", "vocab_size": 32000, "hidden_size": 4096, "intermediate_size": 11008,
    "num_hidden_layers": 32, "num_attention_heads": 32, "rms_norm_eps": 1e-05, "tie_word_embeddings": True,
    "pad_token_id": 0, "eos_token_id": [2, 32000], "bos_token_id": None}))
put("llama_config", "v5_rope_parameters.json", json.dumps({
    "model_type": "llama", "vocab_size": 128256, "hidden_size": 2048, "intermediate_size": 8192,
    "num_hidden_layers": 16, "num_attention_heads": 32, "num_key_value_heads": 8, "head_dim": 64,
    "rope_parameters": {"rope_type": "default", "rope_theta": 500000.0}, "attention_bias": True, "mlp_bias": True,
    "dtype": "bfloat16"}))
# --- cx-pretrain recipes: the presets as they are, and one with overrides-like first line -----------
for preset in ("tiny", "cxformer-small", "dinov2-vits14"):
    put("recipe", preset + ".yaml", open(os.path.join(HERE, "..", "share", "cx", "recipes", preset + ".yaml")).read())
put("recipe", "override.yaml", "optim.base_lr=2e-4\ncrops:\n  global_crops_scale: [0.4, 1.0]\n  hist_equalize: yes\n")
put("preprocess_config", "bit.json", json.dumps({
    "image_processor_type": "BitImageProcessor", "do_resize": True, "size": {"shortest_edge": 16}, "resample": 3,
    "do_center_crop": True, "crop_size": {"height": 12, "width": 12}, "do_rescale": True,
    "rescale_factor": 0.00392156862745098, "do_normalize": True, "image_mean": [0.485, 0.456, 0.406],
    "image_std": [0.229, 0.224, 0.225], "do_convert_rgb": True}))
put("preprocess_config", "vit.json", json.dumps({
    "image_processor_type": "ViTImageProcessor", "size": {"height": 10, "width": 7}, "resample": 2}))
put("preprocess_config", "clip.json", json.dumps({
    "feature_extractor_type": "CLIPFeatureExtractor", "size": 20, "crop_size": 18, "resample": 1}))
put("json_file", "head.json", json.dumps({
    "format": "cx-head", "version": "1.0", "task": "multilabel", "labels": ["Edema"], "feature": "cls",
    "head": {"type": "linear", "in": 4, "out": 1}, "policy": {"uncertain": "ignore", "blank": "negative"},
    "standardize": False, "encoder": {"id": "x", "sha256": "00"}}, indent=2))
put("json_file", "state.json", json.dumps({
    "format": "cx-finetune-checkpoint", "version": "1.0", "step": 3, "signature": {"batch": 2}, "state": {},
    "rng": {"seed": 1}, "groups": ["modules"], "files": {"modules.safetensors": 100}}))

# --- tables, label files ----------------------------------------------------------------------
put("rle", "runs.txt", "5 4\n1 3 9 2\n4 2\n12 3 20 1\n")
put("rle", "empty_heart.txt", "3 3\n1 9\n\n\n")
put("table", "truth.csv", "key,Edema,Cardiomegaly\na,1,0\nb,0,-1\nc,,1\n")
put("table", "pred.tsv", "key\tEdema\tCardiomegaly\na\t0.25\t1e-3\nb\t0.5\t.75\n\"c\"\t1\t0\n")
put("table", "sniffed.txt", "key,score\nx,1\ny,nan\n")
put("table", "quoted.csv", "\ufeffkey,\"a,b\"\r\n\"x\"\"y\",\"1\n2\"\r\n")
put("table", "gzip.csv", gz("key,Edema\na,1\n"))
put("csv", "labels.csv", "Path,Sex,Age\r\n\"a,b.png\",Male,60\nc.png,F,\n")
put("csv", "stray_commas.csv", "a,b,,\n1,2,,,\n")

SEP = "\n#--next-file--\n"
chexpert_cols = ("Path,Sex,Age,Frontal/Lateral,AP/PA,No Finding,Enlarged Cardiomediastinum,Cardiomegaly,Lung Opacity,"
                 "Lung Lesion,Edema,Consolidation,Pneumonia,Atelectasis,Pneumothorax,Pleural Effusion,Pleural Other,"
                 "Fracture,Support Devices")
put("adapter_chexpert", "train.csv", chexpert_cols + "\n"
    "CheXpert-v1.0-small/train/patient00001/study1/view1_frontal.jpg,Female,68,Frontal,AP,1.0,,,,,,,,,0.0,,,,1.0\n"
    "CheXpert-v1.0-small/train/patient00002/study2/view2_lateral.jpg,Male,87,Lateral,,,,-1.0,1.0,,-1.0,-1.0,,,,,,1.0,\n")
nih = ("Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,Patient Gender,View Position,"
       "OriginalImage[Width,Height],OriginalImagePixelSpacing[x,y]\n"
       "00000001_000.png,Cardiomegaly|Effusion,0,1,57,M,PA,2682,2749,0.143,0.143\n"
       "00000002_000.png,No Finding,0,2,81,F,AP,2500,2048,0.171,0.171\n")
nih_bbox = "Image Index,Finding Label,Bbox [x,y,w,h],,,\n00000001_000.png,Cardiomegaly,225.08,547.01,86.77,79.18\n"
put("adapter_nih", "entry.csv", nih)
put("adapter_nih", "entry_bbox_split.csv", nih + SEP + nih_bbox + SEP + "00000001_000.png\n" + SEP + "00000002_000.png\n")
mimic_meta = ("dicom_id,subject_id,study_id,PerformedProcedureStepDescription,ViewPosition,Rows,Columns,StudyDate\n"
              "02aa804e-bde0afdd-112c0b34-7bc16630-4e384014,10000032,50414267,CHEST (PA AND LAT),PA,3056,2544,21800506\n")
mimic_chexpert = ("subject_id,study_id,Atelectasis,Cardiomegaly,Consolidation,Edema,Enlarged Cardiomediastinum,"
                  "Fracture,Lung Lesion,Lung Opacity,No Finding,Pleural Effusion,Pleural Other,Pneumonia,Pneumothorax,"
                  "Support Devices\n10000032,50414267,,,,,,,,,1.0,,,,0.0,\n")
mimic_split = "dicom_id,study_id,subject_id,split\n02aa804e-bde0afdd-112c0b34-7bc16630-4e384014,50414267,10000032,train\n"
put("adapter_mimic", "metadata.csv", mimic_meta + SEP + mimic_chexpert + SEP + mimic_split)
put("adapter_rsna", "labels.csv", "patientId,x,y,width,height,Target\n"
    "0004cfab-14fd-4e49-80ba-63a80b6bddd6,,,,,0\n00436515-870c-4b36-a041-de91049b9ab4,264.0,152.0,213.0,379.0,1\n"
    "00436515-870c-4b36-a041-de91049b9ab4,562.0,152.0,256.0,453.0,1\n" + SEP +
    "patientId,class\n0004cfab-14fd-4e49-80ba-63a80b6bddd6,No Lung Opacity / Not Normal\n"
    "00436515-870c-4b36-a041-de91049b9ab4,Lung Opacity\n")
put("adapter_vindr", "train.csv", "image_id,class_name,class_id,rad_id,x_min,y_min,x_max,y_max\n"
    "50a418190bc3fb1ef1633bf9678929b3,No finding,14,R11,,,,\n"
    "9a5094b2563a1ef3ff50dc5c7ff71345,Cardiomegaly,3,R10,691.0,1375.0,1653.0,1831.0\n"
    "9a5094b2563a1ef3ff50dc5c7ff71345,Aortic enlargement,0,R9,1264.0,743.0,1611.0,1019.0\n")
put("adapter_padchest", "labels.csv", "ImageID,ImageDir,StudyDate_DICOM,StudyID,PatientID,PatientBirth,"
    "PatientSex_DICOM,ViewPosition_DICOM,Projection,MethodProjection,Labels\n"
    "20536686640136348236148679891455886468_k6ga29.png,0,20140915,20536686640136348236148679891455886468,"
    "839860488694292331637988235681460987,1930.0,F,POSTEROANTERIOR,PA,Manual review of DICOM fields,"
    "\"['normal']\"\n"
    "135803415504923515076821959678074435083_fzis7b.png,0,20150223,1,2,1950.0,M,L,L,x,"
    "\"['pleural effusion', 'cardiomegaly']\"\n")
put("adapter_chexmask", "chexpert.csv", "Path,Dice RCA (Mean),Dice RCA (Max),Left Lung,Right Lung,Heart,Height,Width\n"
    "CheXpert-v1.0/train/patient00001/study1/view1_frontal.jpg,0.9,0.95,1 3 7 2,4 2,12 3 20 1,5,4\n"
    "p2.jpg,0.8,0.85,,,,3,3\n")
put("adapter_reports", "openi.xml", "<?xml version=\"1.0\"?>\n<eCitation>\n<MedlineCitation><Article><Abstract>"
    "<AbstractText Label=\"FINDINGS\">The heart is normal &amp; lungs clear.</AbstractText>"
    "<AbstractText Label=\"IMPRESSION\">No acute disease.</AbstractText></Abstract></Article></MedlineCitation>"
    "<MeSH><major>normal</major></MeSH><uId id=\"CXR1\"/>"
    "<parentImage id=\"CXR1_1_IM-0001-3001\"><url>/x.jpg</url></parentImage></eCitation>\n")
put("adapter_reports", "mimic.txt", "                                 FINAL REPORT\n EXAMINATION:  CHEST (PA AND LAT)\n\n"
    " FINDINGS: \n\n No focal consolidation.\n\n IMPRESSION: \n\n No acute process.\n")
put("adapter_folder", "labels.tsv", "key\tEdema\tCardiomegaly\na\t1\t0\nb_c\t-1\t\n")
print("seeds written under", OUT)
