"""Thumbnails of an offender's images: small, our own bytes, and never a crash or a stall."""

from __future__ import annotations

import io
import struct
import zlib

import pytest
from PIL import Image

from guardmail.export import thumbs
from guardmail.export.content import mail_content
from guardmail.export.thumbs import SIZE, Thumbs, thumbnail


def _image(fmt: str, size: tuple[int, int] = (400, 300)) -> bytes:
    img = Image.new("RGB", size, (200, 30, 30))
    out = io.BytesIO()
    img.save(out, format=fmt)
    return out.getvalue()


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _png_declaring(width: int, height: int, *, full: bool = False) -> bytes:
    """A PNG whose header claims ``width`` x ``height`` pixels; with ``full``, every row of
    them (black: a few kilobytes that decode to ``width * height * 3`` bytes, a real bomb)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    rows = height if full else 1
    idat = zlib.compress((b"\x00" + b"\x00" * (3 * width)) * rows, 9)
    return (
        b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")
    )


@pytest.mark.parametrize(
    ("fmt", "ctype"), [("PNG", "image/png"), ("JPEG", "image/jpeg"), ("GIF", "image/gif")]
)
def test_png_jpeg_and_gif_become_a_small_png_of_our_own(fmt: str, ctype: str) -> None:
    out = thumbnail(_image(fmt), ctype)
    with Image.open(io.BytesIO(out)) as img:
        assert img.format == "PNG"
        assert max(img.size) == SIZE and img.size[0] > img.size[1]  # shape kept


@pytest.mark.parametrize(
    ("width", "height"),
    [
        (30_000, 30_000),  # beyond Pillow's own bomb limit
        (5_000, 5_000),  # 25 million pixels: beyond ours, within Pillow's default
        (25_000, 1),  # a side too long
        (0, 10),
    ],
)
def test_a_decompression_bomb_is_refused_before_decoding(width: int, height: int) -> None:
    saved = Image.MAX_IMAGE_PIXELS
    assert thumbnail(_png_declaring(width, height), "image/png") == b""
    assert Image.MAX_IMAGE_PIXELS == saved  # the global is put back


def test_a_complete_bomb_just_over_the_pixel_limit_is_refused() -> None:
    # 4,100 x 4,100 black pixels: 50 MB decoded from some 50 KB, and a valid image that
    # would otherwise thumbnail fine (the 4,000 x 4,000 one below does).
    bomb = _png_declaring(4_100, 4_100, full=True)
    assert len(bomb) < 200_000
    assert thumbnail(bomb, "image/png") == b""
    assert thumbnail(_png_declaring(4_000, 4_000, full=True), "image/png")


def test_a_truncated_or_corrupt_image_is_listed_without_a_picture() -> None:
    png = _image("PNG")
    assert thumbnail(png[: len(png) // 2], "image/png") == b""
    assert thumbnail(png[:60], "image/png") == b""
    jpeg = _image("JPEG")
    assert thumbnail(jpeg[:200], "image/jpeg") == b""
    assert thumbnail(b"\x89PNG\r\n\x1a\n" + b"\xff" * 500, "image/png") == b""


def test_only_the_formats_named_are_read_and_only_as_what_they_claim() -> None:
    assert thumbnail(_image("BMP"), "image/bmp") == b""
    assert thumbnail(_image("PNG"), "image/svg+xml") == b""
    assert thumbnail(_image("JPEG"), "image/png") == b""  # bytes not of the type declared


def test_more_bytes_than_the_cap_are_not_decoded(monkeypatch: pytest.MonkeyPatch) -> None:
    png = _image("PNG")
    monkeypatch.setattr(thumbs, "MAX_BYTES", len(png) - 1)
    assert thumbnail(png, "image/png") == b""


def test_the_budget_bounds_thumbnails_per_message_and_per_report() -> None:
    png = _image("PNG", (20, 20))
    budget = Thumbs(total=3, per_message=2)
    assert budget.take(png, "image/png", taken=0)
    assert budget.take(png, "image/png", taken=2) == b""  # this message has its two
    assert budget.take(b"not an image", "image/png", taken=0) == b""  # counted all the same
    assert budget.take(png, "image/png", taken=0)
    assert budget.take(png, "image/png", taken=0) == b""  # the report has its three


def test_a_mail_with_a_bomb_a_broken_and_a_good_image_shows_only_the_good_one() -> None:
    import base64

    parts = [
        ("bomb.png", "image/png", _png_declaring(40_000, 40_000)),
        ("broken.jpg", "image/jpeg", _image("JPEG")[:300]),
        ("good.gif", "image/gif", _image("GIF", (64, 64))),
        ("doc.pdf", "application/pdf", b"%PDF-1.4 x"),
    ]
    raw = b'From: a@b.example\r\nContent-Type: multipart/mixed; boundary="b"\r\n\r\n'
    for name, ctype, data in parts:
        raw += (
            (
                f"--b\r\nContent-Type: {ctype}\r\n"
                f'Content-Disposition: attachment; filename="{name}"\r\n'
                "Content-Transfer-Encoding: base64\r\n\r\n"
            ).encode()
            + base64.b64encode(data)
            + b"\r\n"
        )
    raw += b"--b--\r\n"
    c = mail_content(raw, thumbs=Thumbs())
    shown = {a.name: bool(a.thumbnail) for a in c.attachments}
    assert shown == {"bomb.png": False, "broken.jpg": False, "good.gif": True, "doc.pdf": False}
