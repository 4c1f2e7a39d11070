"""Imaging: an example Tessera service doing real image operations with Pillow.

Endpoints (all take the image as a multipart part ``image``; other fields go in the ``data`` part):
  /blur       ``areas``: list of boxes ``{x, y, w, h}`` to blur (omitted = the whole image),
              optional ``radius`` (Gaussian radius in px; default scales with each box). The
              "face-blur" step: feed it the ``areas`` found by faces.py.
  /crop       ``box``: ``{x, y, w, h}`` (clamped to the image; wholly outside = 400).
  /greyscale  nothing else.
  /resize     ``width`` and/or ``height`` (one missing = keep the aspect ratio).
  /convert    ``format``: png | jpeg | webp (default png), optional ``quality`` 1-100.
Each answers (by callback) with the new image as a binary part ``image`` (content type and file
name set) and ``data`` = ``{"width", "height", "format", ...}``. The output keeps the input's
format (png, jpeg or webp; anything else becomes png) except for /convert. EXIF orientation is
applied on reading (as faces.py does, so boxes match); metadata is not copied to the output.

    python imaging.py --port 8102 --engine http://127.0.0.1:8080
"""

from __future__ import annotations

import io
import os

from PIL import Image, ImageFilter, ImageOps

from tessera_service import (BadRequest, Blob, Endpoint, Service, int_field, json_field,
                             parse_box, require_blob)

FORMATS = {"png": ("PNG", "image/png", "png"),
           "jpeg": ("JPEG", "image/jpeg", "jpg"),
           "webp": ("WEBP", "image/webp", "webp")}
PIL_TO_FORMAT = {"PNG": "png", "JPEG": "jpeg", "MPO": "jpeg", "WEBP": "webp"}
MAX_SIDE = 20000  # largest width/height /resize may produce


class Decoded:
    """An input image, decoded and validated at dispatch time."""

    def __init__(self, blob: Blob):
        try:
            im = Image.open(io.BytesIO(blob.data))  # in memory: nothing to close
            source_format = im.format or ""
            im.load()
            im = ImageOps.exif_transpose(im)
        except Image.DecompressionBombError as e:
            raise BadRequest(f"image too large: {e}", 413) from None
        except Exception as e:
            raise BadRequest(f"unreadable image '{blob.filename or blob.name}': {e}") from None
        if im.mode not in ("L", "LA", "RGB", "RGBA"):
            has_alpha = "A" in im.mode or "transparency" in im.info
            im = im.convert("RGBA" if has_alpha else "RGB")
        self.image = im
        self.format = PIL_TO_FORMAT.get(source_format, "png")
        stem = os.path.splitext(os.path.basename(blob.filename or ""))[0]
        self.stem = "".join(c if c.isalnum() or c in "-_." else "_" for c in stem)[:100] or "image"


def encode(image: Image.Image, fmt: str, stem: str, op: str, quality: int | None = None,
           extra: dict | None = None) -> dict:
    """The result of an operation: the image as part ``image`` plus its description."""
    pil_format, content_type, ext = FORMATS[fmt]
    if fmt == "jpeg" and image.mode not in ("L", "RGB"):
        image = image.convert("L" if image.mode.startswith("L") else "RGB")
    elif fmt == "webp" and image.mode not in ("RGB", "RGBA"):
        image = image.convert("RGBA" if "A" in image.mode else "RGB")
    options: dict = {}
    if fmt in ("jpeg", "webp"):
        options["quality"] = quality or 90
    elif fmt == "png":
        options["optimize"] = False
    buf = io.BytesIO()
    image.save(buf, pil_format, **options)
    result = {
        "image": Blob("image", buf.getvalue(), f"{stem}-{op}.{ext}", content_type),
        "width": image.width,
        "height": image.height,
        "format": fmt,
    }
    result.update(extra or {})
    return result


def clamp(box: tuple[int, int, int, int], width: int, height: int) -> tuple[int, int, int, int] | None:
    """The part of ``box`` inside the image as (left, top, right, bottom), or None if empty."""
    x, y, w, h = box
    left, top = max(0, x), max(0, y)
    right, bottom = min(width, x + w), min(height, y + h)
    return (left, top, right, bottom) if right > left and bottom > top else None


# ----------------------------------------------------------------------------------- blur

def prepare_blur(fields: dict):
    src = Decoded(require_blob(fields, "image"))
    areas = json_field(fields, "areas")
    if areas is None:
        boxes = [(0, 0, src.image.width, src.image.height)]
    elif isinstance(areas, list):
        boxes = [parse_box(a, f"areas[{i}]") for i, a in enumerate(areas)]
    else:
        raise BadRequest("field 'areas' must be a list of {x, y, w, h} boxes")
    if len(boxes) > 10000:
        raise BadRequest("too many areas (more than 10000)")
    radius = int_field(fields, "radius", None, lo=1, hi=500)
    return src, boxes, radius


def run_blur(prepared) -> dict:
    src, boxes, radius = prepared
    image = src.image.copy()
    blurred = 0
    for box in boxes:
        region = clamp(box, image.width, image.height)
        if region is None:
            continue
        left, top, right, bottom = region
        r = radius or max(4, min(right - left, bottom - top) // 6)
        # Blur a margin around the box too, so the box's edges are smoothed from real pixels.
        m = 2 * r
        outer = (max(0, left - m), max(0, top - m), min(image.width, right + m),
                 min(image.height, bottom + m))
        patch = image.crop(outer).filter(ImageFilter.GaussianBlur(r))
        inner = patch.crop((left - outer[0], top - outer[1], right - outer[0], bottom - outer[1]))
        image.paste(inner, (left, top))
        blurred += 1
    return encode(image, src.format, src.stem, "blur", extra={"blurred": blurred})


# ----------------------------------------------------------------------------------- crop

def prepare_crop(fields: dict):
    src = Decoded(require_blob(fields, "image"))
    box = json_field(fields, "box")
    if box is None:
        raise BadRequest("missing field 'box' ({x, y, w, h})")
    region = clamp(parse_box(box, "box"), src.image.width, src.image.height)
    if region is None:
        raise BadRequest(f"box {box} lies outside the {src.image.width}x{src.image.height} image")
    return src, region


def run_crop(prepared) -> dict:
    src, (left, top, right, bottom) = prepared
    image = src.image.crop((left, top, right, bottom))
    return encode(image, src.format, src.stem, "crop",
                  extra={"box": {"x": left, "y": top, "w": right - left, "h": bottom - top}})


# ----------------------------------------------------------------------------------- greyscale

def prepare_greyscale(fields: dict):
    return Decoded(require_blob(fields, "image"))


def run_greyscale(src: Decoded) -> dict:
    image = src.image.convert("LA" if "A" in src.image.mode else "L")
    return encode(image, src.format, src.stem, "greyscale")


# ----------------------------------------------------------------------------------- resize

def prepare_resize(fields: dict):
    src = Decoded(require_blob(fields, "image"))
    width = int_field(fields, "width", None, lo=1, hi=MAX_SIDE)
    height = int_field(fields, "height", None, lo=1, hi=MAX_SIDE)
    w0, h0 = src.image.size
    if width is None and height is None:
        raise BadRequest("give 'width', 'height' or both")
    if width is None:
        width = max(1, round(w0 * height / h0))
    elif height is None:
        height = max(1, round(h0 * width / w0))
    if width > MAX_SIDE or height > MAX_SIDE:
        raise BadRequest(f"resulting size {width}x{height} exceeds {MAX_SIDE}px per side")
    return src, width, height


def run_resize(prepared) -> dict:
    src, width, height = prepared
    image = src.image.resize((width, height), Image.Resampling.LANCZOS)
    return encode(image, src.format, src.stem, "resize")


# ----------------------------------------------------------------------------------- convert

def prepare_convert(fields: dict):
    src = Decoded(require_blob(fields, "image"))
    fmt = json_field(fields, "format", "png")
    if not isinstance(fmt, str) or fmt.lower().replace("jpg", "jpeg") not in FORMATS:
        raise BadRequest(f"field 'format' must be one of {', '.join(FORMATS)}, got {fmt!r}")
    quality = int_field(fields, "quality", None, lo=1, hi=100)
    return src, fmt.lower().replace("jpg", "jpeg"), quality


def run_convert(prepared) -> dict:
    src, fmt, quality = prepared
    return encode(src.image, fmt, src.stem, "convert", quality=quality)


SERVICE = Service(
    name="imaging",
    description="Image operations (Pillow): blur areas, crop, greyscale, resize, convert.",
    default_port=8102,
    endpoints=[
        Endpoint("blur", "Blur areas of an image",
                 "Multipart: part 'image' (png, jpeg, webp, ...) and a 'data' part "
                 '{"areas": [{"x", "y", "w", "h"}, ...], "radius": int (optional)}. Without areas '
                 "the whole image is blurred. Returns part 'image' and data {width, height, format, "
                 "blurred}.", "image", prepare_blur, run_blur),
        Endpoint("crop", "Crop an image to a box",
                 "Multipart: part 'image' and a 'data' part {\"box\": {\"x\", \"y\", \"w\", \"h\"}} "
                 "(clamped to the image). Returns part 'image' and data {width, height, format, box}.",
                 "image", prepare_crop, run_crop),
        Endpoint("greyscale", "Convert an image to greyscale",
                 "Multipart: part 'image'. Returns part 'image' and data {width, height, format}.",
                 "image", prepare_greyscale, run_greyscale),
        Endpoint("resize", "Resize an image",
                 "Multipart: part 'image' and a 'data' part {\"width\": int, \"height\": int}; with "
                 "only one of them the aspect ratio is kept. Returns part 'image' and data "
                 "{width, height, format}.", "image", prepare_resize, run_resize),
        Endpoint("convert", "Convert an image to png, jpeg or webp",
                 "Multipart: part 'image' and a 'data' part {\"format\": \"png\"|\"jpeg\"|\"webp\", "
                 "\"quality\": 1-100 (optional)}; default png. Returns part 'image' and data "
                 "{width, height, format}.", "image", prepare_convert, run_convert),
    ],
)

if __name__ == "__main__":
    raise SystemExit(SERVICE.main())
