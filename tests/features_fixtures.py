"""Small image fixtures written by the feature tests: every awkward JPEG/PNG a real folder has."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np


def rgb_array(seed: int, size=(40, 56)) -> np.ndarray:
    """A smooth random colour image (compresses like a photo, unlike pure noise)."""
    rng = np.random.default_rng(seed)
    h, w = size
    base = rng.integers(0, 256, (4, 4, 3)).astype(np.float32)
    from PIL import Image

    small = Image.fromarray(base.astype(np.uint8))
    return np.asarray(small.resize((w, h), Image.BILINEAR))


def write_images(folder: Path, n: int = 6) -> list[Path]:
    """n ordinary RGB JPEGs of different sizes."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        p = folder / f"img{i}.jpg"
        Image.fromarray(rgb_array(i, (32 + 4 * i, 48 - 2 * i))).save(p, quality=92)
        paths.append(p)
    return paths


def write_awkward_images(folder: Path) -> dict[str, Path]:
    """Grayscale, CMYK, palette, RGBA PNG, EXIF-rotated JPEG, truncated JPEG, a non-image, a missing file."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    base = Image.fromarray(rgb_array(99, (36, 52)))
    out: dict[str, Path] = {}
    out["gray"] = folder / "gray.jpg"
    base.convert("L").save(out["gray"])
    out["cmyk"] = folder / "cmyk.jpg"
    base.convert("CMYK").save(out["cmyk"])
    out["palette"] = folder / "palette.png"
    base.convert("P", palette=Image.ADAPTIVE, colors=16).save(out["palette"])
    out["rgba"] = folder / "rgba.png"
    rgba = base.convert("RGBA")
    rgba.putalpha(128)
    rgba.save(out["rgba"])
    out["exif"] = folder / "exif_rot.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 CW to display
    base.save(out["exif"], exif=exif.tobytes())
    buf = io.BytesIO()
    base.resize((120, 90)).save(buf, format="JPEG", quality=95)
    out["truncated"] = folder / "truncated.jpg"
    out["truncated"].write_bytes(buf.getvalue()[: len(buf.getvalue()) * 2 // 3])
    out["garbage"] = folder / "garbage.jpg"
    out["garbage"].write_bytes(b"this is not an image at all" * 10)
    out["missing"] = folder / "missing.jpg"  # never written
    return out


def write_mirflickr_fixture(root: Path, n: int = 10) -> Path:
    """A tiny MIRFlickr ``all_*.txt`` layout with images128/ (for CLI tests)."""
    from PIL import Image

    (root / "images128").mkdir(parents=True, exist_ok=True)
    tags_pool = ["sky", "sea", "dog", "cat", "tree", "night", "city", "people"]
    imgs, tags, labels = [], [], []
    for i in range(1, n + 1):
        imgs.append(f"mirflickr/im{i}.jpg")
        Image.fromarray(rgb_array(i, (32, 32))).save(root / "images128" / f"im{i}.jpg")
        tags.append(", ".join(tags_pool[j] for j in range(len(tags_pool)) if (i + j) % 3 == 0) or "sky")
        labels.append(" ".join("1" if (i + j) % 4 == 0 else "0" for j in range(3)))
    labels = [lab if "1" in lab else "1 0 0" for lab in labels]
    (root / "all_imgs.txt").write_text("\n".join(imgs) + "\n")
    (root / "all_tags.txt").write_text("\n".join(tags) + "\n")
    (root / "all_labels.txt").write_text("\n".join(labels) + "\n")
    return root
