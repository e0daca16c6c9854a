"""Robust image opening: EXIF rotation, grayscale/CMYK/palette/alpha to RGB, truncated JPEGs."""

from __future__ import annotations

import os

from cmhash.errors import DataError


class UnreadableImageError(DataError):
    """The file exists but cannot be decoded as an image."""


def open_rgb(path: str | os.PathLike, allow_truncated: bool = True):
    """Open an image file as RGB, applying its EXIF orientation.

    Truncated JPEGs are decoded as far as the data goes (the rest is grey) when
    ``allow_truncated``; anything PIL cannot identify raises :class:`UnreadableImageError`
    naming the file.
    """
    from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            if allow_truncated:
                prev = ImageFile.LOAD_TRUNCATED_IMAGES
                ImageFile.LOAD_TRUNCATED_IMAGES = True
                try:
                    im.load()
                finally:
                    ImageFile.LOAD_TRUNCATED_IMAGES = prev
            else:
                im.load()
            im = ImageOps.exif_transpose(im)
            if im.mode in ("P", "PA") and "transparency" in im.info:
                im = im.convert("RGBA")
            if im.mode in ("RGBA", "LA"):
                background = Image.new("RGB", im.size, (255, 255, 255))
                background.paste(im.convert("RGBA"), mask=im.convert("RGBA").split()[-1])
                return background
            return im.convert("RGB")
    except FileNotFoundError:
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise UnreadableImageError(f"{path}: cannot decode image ({exc})") from exc
