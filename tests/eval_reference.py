"""Python side of cx-eval's reference checks (tests/make_eval_goldens.py, tests/cli/cx-eval.bats).

coco_tokenize mirrors cx::metrics::coco_tokenize (lib/cx/metrics/text.hpp) rule for rule, on bytes
like the C++ (ASCII lowercase, ASCII letters and digits), so that NLTK's corpus_bleu can be run on
exactly the tokens cx-eval scores. The unit test compares the two tokenisers on the golden texts.
"""
import re
import xml.etree.ElementTree as ET

_SEPARATORS = set(b'()[]{}"`;?! \t\n\r\f\v')
_SUFFIXES = [b"'s", b"'re", b"'ve", b"'ll", b"'d", b"'m"]


def _isdigit(c):
    return 48 <= c <= 57


def _isalnum(c):
    return _isdigit(c) or 65 <= c <= 90 or 97 <= c <= 122


def _strip(w):
    return w.strip(b"'")


def _push(word, out):
    if len(word) > 3 and word.endswith(b"n't") and _isalnum(word[-4]):
        head = _strip(word[:-3])
        if head:
            out.append(head)
        out.append(b"n't")
        return
    for suf in _SUFFIXES:
        if len(word) > len(suf) and word.endswith(suf) and _isalnum(word[-len(suf) - 1]):
            head = _strip(word[: -len(suf)])
            if head:
                out.append(head)
            out.append(suf)
            return
    word = _strip(word)
    if word:
        out.append(word)


def coco_tokenize(text):
    data = text.encode("utf-8") if isinstance(text, str) else text
    out, word = [], bytearray()
    n = len(data)
    for i in range(n):
        c = data[i]
        lc = c + 32 if 65 <= c <= 90 else c
        prev = data[i - 1] if i > 0 else 32
        nxt = data[i + 1] if i + 1 < n else 32
        if lc in (ord(","), ord(":")):
            keep = _isdigit(prev) and _isdigit(nxt)
        elif lc in (ord("."), ord("-")):
            keep = _isalnum(prev) and _isalnum(nxt)
        elif lc in _SEPARATORS:
            keep = False
        else:
            keep = True
        if keep:
            word.append(lc)
        elif word:
            _push(bytes(word), out)
            word = bytearray()
    if word:
        _push(bytes(word), out)
    return [w.decode("utf-8", "surrogateescape") for w in out]


def iu_sections(path):
    """FINDINGS and IMPRESSION of one IU/Open-i report XML (None when absent or empty)."""
    root = ET.parse(path).getroot()
    out = {}
    for node in root.iter("AbstractText"):
        label = node.get("Label")
        text = (node.text or "").strip()
        out[label] = re.sub(r"\s+", " ", text) if text else None
    return out.get("FINDINGS"), out.get("IMPRESSION")


def write_label_map(path, rows):
    """An 8-bit gray PNG label map from a list of equal-length strings of digits ('.' = 0)."""
    from PIL import Image

    h, w = len(rows), len(rows[0])
    img = Image.new("L", (w, h))
    img.putdata([0 if ch == "." else int(ch) for row in rows for ch in row])
    img.save(path, format="PNG")


def png_bytes(rows):
    import io

    buf = io.BytesIO()
    write_label_map(buf, rows)
    return buf.getvalue()


def write_stream(path, records, classes=None, end=True, json_classes=None):
    """A cx record stream (man 5 cx-stream) written with Python's tarfile: __cx__, one .json and
    .mask.png per record, __end__ (left out when end is False: a truncated stream). classes go into
    the header's fields entry, json_classes into every record's .json."""
    import io
    import json
    import tarfile

    def add(tar, name, data):
        info = tarfile.TarInfo(name)
        info.size = len(data)
        info.mtime = 0
        tar.addfile(info, io.BytesIO(data))

    header = {"format": "cx-stream", "version": "1.0", "fields": {}, "labels": [], "provenance": []}
    if classes is not None:
        header["fields"]["mask.png"] = {"type": "image/png", "classes": classes}
    with tarfile.open(path, "w", format=tarfile.USTAR_FORMAT) as tar:
        add(tar, "__cx__", json.dumps(header).encode())
        for key, rows in records:
            meta = {"id": key}
            if json_classes is not None:
                meta["classes"] = json_classes
            add(tar, key + ".json", json.dumps(meta).encode())
            add(tar, key + ".mask.png", png_bytes(rows))
        if end:
            add(tar, "__end__", json.dumps({"records": len(records)}).encode())
