"""Writes a real test photo with one face, without any download: skimage's astronaut picture.

``skimage.data.astronaut()`` (Eileen Collins, public domain, NASA) ships inside the scikit-image
wheel. faces.py's defaults find exactly one face in it, at about x=177 y=66 w=95 h=95.

    .venv/bin/python make_test_image.py face.jpg        # JPEG, or .png / .webp by extension
"""

from __future__ import annotations

import sys

from PIL import Image
from skimage import data


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: make_test_image.py OUT.jpg", file=sys.stderr)
        return 2
    image = Image.fromarray(data.astronaut())
    options = {"quality": 90} if argv[0].lower().endswith((".jpg", ".jpeg", ".webp")) else {}
    image.save(argv[0], **options)
    print(f"{argv[0]}: {image.width}x{image.height}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
