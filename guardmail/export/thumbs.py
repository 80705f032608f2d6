"""Small, safe thumbnails of the images an offender sent, for the report.

Contracts (the offender wrote these bytes; a hostile image never crashes or stalls an export):
- Only PNG, JPEG and GIF are read, and only when the part says it is one of them (image/png,
  image/jpeg, image/gif) and its bytes open as that format; anything else is listed only.
- Bounds before any pixel is decoded: at most ``MAX_BYTES`` of input, at most ``MAX_PIXELS``
  pixels by the declared size (checked from the header alone), no side over ``MAX_SIDE``; a
  JPEG is decoded at reduced scale (``draft``), a GIF only in its first frame. Pillow's own
  decompression-bomb guard (``Image.MAX_IMAGE_PIXELS``) is held to the same limit while we
  decode, and its warning is treated as the error it is.
- Any failure to read (truncated, corrupt, a bomb, a decoder's own exception) yields b"", and
  the image is listed without a picture; nothing here raises.
- The output is our own re-encoding (PNG, at most ``SIZE`` pixels a side, RGB), never the
  sender's bytes: the PDF library reads only what we wrote. The bundle's item file is the
  evidence; the thumbnail is display only.
- ``Thumbs`` is a budget: at most ``per_message`` thumbnails for one message and ``total`` for a
  whole report, so a report of thousands of image mails stays small and quick.
"""

from __future__ import annotations

import io
import warnings

from PIL import Image

MAX_BYTES = 8 * 1024 * 1024
MAX_PIXELS = 16_000_000  # 4,000 x 4,000: a phone photo
MAX_SIDE = 20_000
SIZE = 160  # pixels a side of the thumbnail
FORMATS = {"image/png": "PNG", "image/jpeg": "JPEG", "image/jpg": "JPEG", "image/gif": "GIF"}


def thumbnail(data: bytes, content_type: str) -> bytes:
    """A PNG of at most SIZE x SIZE pixels showing ``data``, or b"" if it is not safely readable."""
    fmt = FORMATS.get(content_type.strip().lower())
    if fmt is None or not data or len(data) > MAX_BYTES:
        return b""
    saved = Image.MAX_IMAGE_PIXELS
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            Image.MAX_IMAGE_PIXELS = min(saved or MAX_PIXELS, MAX_PIXELS)
            return _thumbnail(data, fmt)
    except Exception:  # a decoder fails in many ways (and versions): the image is listed only
        return b""
    finally:
        Image.MAX_IMAGE_PIXELS = saved


def _thumbnail(data: bytes, fmt: str) -> bytes:
    with Image.open(io.BytesIO(data), formats=[fmt]) as img:
        width, height = img.size
        if not 0 < width <= MAX_SIDE or not 0 < height <= MAX_SIDE or width * height > MAX_PIXELS:
            return b""
        if fmt == "JPEG":
            img.draft("RGB", (SIZE * 2, SIZE * 2))  # decode at 1/2..1/8 scale: less work
        img.seek(0)  # a GIF: the first frame only
        img.load()
        frame = img.convert("RGB")
    frame.thumbnail((SIZE, SIZE))
    out = io.BytesIO()
    frame.save(out, format="PNG", optimize=False)
    return out.getvalue()


class Thumbs:
    """How many thumbnails are still allowed, for one message and for the whole report."""

    def __init__(self, *, total: int = 200, per_message: int = 4) -> None:
        self.left = total
        self.per_message = per_message

    def take(self, data: bytes, content_type: str, *, taken: int) -> bytes:
        """The thumbnail of ``data`` if the budget allows (``taken`` of this message so far)."""
        if self.left <= 0 or taken >= self.per_message:
            return b""
        if FORMATS.get(content_type.strip().lower()) is None:
            return b""
        self.left -= 1  # counted even when the image cannot be read: bounded work either way
        return thumbnail(data, content_type)
