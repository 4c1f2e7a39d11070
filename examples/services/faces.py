"""Faces: an example Tessera service detecting faces with OpenCV's Haar cascade.

Endpoint /detect takes a multipart part ``image`` (optionally a ``data`` part with
``scale_factor``, ``min_neighbors``, ``min_size``) and answers, by callback, with the JSON result
``{"areas": [{"x", "y", "w", "h"}, ...], "count": n, "width": w, "height": h}`` — boxes in pixels of
the image as read (EXIF orientation applied, as imaging.py does), sorted left to right.

The model is ``haarcascade_frontalface_default.xml`` shipped inside the opencv-python-headless
wheel (``cv2.data.haarcascades``): nothing is downloaded. Defaults ``scaleFactor=1.1``,
``minNeighbors=5``, ``minSize=30`` px find exactly the one face in skimage's astronaut photo
(make_test_image.py); ``scaleFactor=1.05`` finds a second, false one there. Images larger than
1600 px on a side are scaled down for detection and the boxes scaled back.

    python faces.py --port 8101 --engine http://127.0.0.1:8080
"""

from __future__ import annotations

import io
import threading

import cv2
import numpy as np
from PIL import Image, ImageOps

from tessera_service import BadRequest, Endpoint, Service, int_field, number_field, require_blob

CASCADE = cv2.data.haarcascades + "haarcascade_frontalface_default.xml"
DETECT_MAX_SIDE = 1600
SCALE_FACTOR, MIN_NEIGHBORS, MIN_SIZE = 1.1, 5, 30

_local = threading.local()  # one classifier per worker thread (not documented as thread-safe)


def classifier() -> cv2.CascadeClassifier:
    c = getattr(_local, "classifier", None)
    if c is None:
        c = cv2.CascadeClassifier(CASCADE)
        if c.empty():
            raise RuntimeError(f"cannot load the Haar cascade {CASCADE}")
        _local.classifier = c
    return c


def prepare_detect(fields: dict):
    blob = require_blob(fields, "image")
    try:
        im = Image.open(io.BytesIO(blob.data))
        im.load()
        im = ImageOps.exif_transpose(im)
    except Image.DecompressionBombError as e:
        raise BadRequest(f"image too large: {e}", 413) from None
    except Exception as e:
        raise BadRequest(f"unreadable image '{blob.filename or blob.name}': {e}") from None
    options = {
        "scale_factor": number_field(fields, "scale_factor", SCALE_FACTOR, lo=1.01, hi=2.0),
        "min_neighbors": int_field(fields, "min_neighbors", MIN_NEIGHBORS, lo=0, hi=100),
        "min_size": int_field(fields, "min_size", MIN_SIZE, lo=1, hi=10000),
    }
    return im.convert("L"), options


def run_detect(prepared) -> dict:
    grey, o = prepared
    width, height = grey.size
    scale = min(1.0, DETECT_MAX_SIDE / max(width, height))
    small = grey if scale == 1.0 else grey.resize(
        (max(1, round(width * scale)), max(1, round(height * scale))), Image.Resampling.BILINEAR)
    pixels = cv2.equalizeHist(np.asarray(small, dtype=np.uint8))
    min_size = max(1, round(o["min_size"] * scale))
    found = classifier().detectMultiScale(pixels, scaleFactor=o["scale_factor"],
                                          minNeighbors=o["min_neighbors"],
                                          minSize=(min_size, min_size))
    areas = []
    for x, y, w, h in (found if len(found) else []):
        x0, y0 = round(x / scale), round(y / scale)
        x1, y1 = min(width, round((x + w) / scale)), min(height, round((y + h) / scale))
        areas.append({"x": x0, "y": y0, "w": x1 - x0, "h": y1 - y0})
    areas.sort(key=lambda a: (a["x"], a["y"]))
    return {"areas": areas, "count": len(areas), "width": width, "height": height}


SERVICE = Service(
    name="faces",
    description="Face detection (OpenCV Haar cascade, frontal faces).",
    default_port=8101,
    endpoints=[
        Endpoint("detect", "Detect faces in an image",
                 "Multipart: part 'image' (png, jpeg, webp, ...), optionally a 'data' part "
                 '{"scale_factor": 1.1, "min_neighbors": 5, "min_size": 30}. Returns JSON '
                 '{"areas": [{"x", "y", "w", "h"}, ...], "count", "width", "height"}.',
                 "image", prepare_detect, run_detect),
    ],
)

if __name__ == "__main__":
    raise SystemExit(SERVICE.main())
