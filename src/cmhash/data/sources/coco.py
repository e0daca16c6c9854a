"""MS-COCO: ``captions_<subset>.json`` + ``instances_<subset>.json`` + image folders; 80 labels.

Files under ``root``: ``annotations/captions_<subset>.json`` and
``annotations/instances_<subset>.json`` (or directly under ``root``), images in ``<subset>/``
(``images_dir`` replaces the folder; ``{subset}`` in it is filled in). ``subsets``: which ones
(comma-separated, e.g. ``train2014,val2014``; default: every ``captions_*.json`` found).

* one pair per caption (``captions=all``, COCO has about 5 per image; ``groups`` = the image, as
  for Flickr8k) or one per image (``captions=first``);
* labels: multi-hot over the categories of ``instances_*.json`` (80 in COCO), ordered by
  category id; an image's labels are the categories of its instance annotations;
* ``official_splits``: one index array per subset (e.g. ``train2014``).

Policies: a caption of an image that the captions file does not list is ``malformed_row``; an
empty caption is ``no_text``; an image without any instance (about 1% of COCO) is ``no_labels``
(``keep_unlabeled`` keeps it); missing/unreadable images are dropped and reported. An instance
naming an unknown category or image is an error naming the file. ``strict`` fails on the first
dropped pair.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from cmhash.data import SOURCES
from cmhash.data.dataset import LoadReport, PairedDataset
from cmhash.data.sources._common import (
    ImageChecker,
    SourceOptions,
    as_list,
    assemble,
    check_options,
    choice,
    common_options,
    finish_report,
    strict_row_error,
)
from cmhash.errors import DataError, MissingFileError


def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise MissingFileError(f"{path}: COCO annotation file not found")
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}: not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})") from None
    if not isinstance(data, dict):
        raise DataError(f"{path}: expected a JSON object with 'images' and 'annotations'")
    for key in ("images", "annotations"):
        if not isinstance(data.get(key), list):
            raise DataError(f"{path}: no '{key}' list (is this a COCO captions/instances file?)")
    return data


def _annotation_dir(root: Path, subsets: list[str]) -> Path:
    for d in (root / "annotations", root):
        if subsets and all((d / f"captions_{s}.json").is_file() for s in subsets):
            return d
        if not subsets and any(d.glob("captions_*.json")):
            return d
    want = ", ".join(f"captions_{s}.json" for s in subsets) or "captions_*.json"
    raise MissingFileError(f"{root}: no {want} found in annotations/ or the root")


def _images_and_labels(subset: str, ann_dir: Path, caps: dict, categories: dict[int, int] | None):
    """(image id -> file name, image id -> set of category columns, category list of this file)."""
    files = {}
    for k, im in enumerate(caps["images"]):
        try:
            files[int(im["id"])] = str(im["file_name"])
        except (KeyError, TypeError, ValueError):
            raise DataError(f"{ann_dir / f'captions_{subset}.json'}: images[{k}] lacks an integer 'id' or a 'file_name'") from None
    inst_path = ann_dir / f"instances_{subset}.json"
    inst = _read_json(inst_path)
    cats = inst.get("categories")
    if not isinstance(cats, list) or not cats:
        raise DataError(f"{inst_path}: no 'categories' list")
    cat_list = sorted((int(c["id"]), str(c["name"])) for c in cats)
    if categories is None:
        categories = {cid: j for j, (cid, _) in enumerate(cat_list)}
    elif sorted(categories) != [c for c, _ in cat_list]:
        raise DataError(f"{inst_path}: its categories differ from those of the first subset; load the subsets separately")
    labels: dict[int, set[int]] = {}
    for k, a in enumerate(inst["annotations"]):
        try:
            img, cat = int(a["image_id"]), int(a["category_id"])
        except (KeyError, TypeError, ValueError):
            raise DataError(f"{inst_path}: annotations[{k}] lacks an integer image_id/category_id") from None
        if cat not in categories:
            raise DataError(f"{inst_path}: annotations[{k}] names category {cat}, which is not in 'categories'")
        labels.setdefault(img, set()).add(categories[cat])
    return files, labels, cat_list, categories


@SOURCES.register("coco")
@common_options(check_images="open", keep_unlabeled=False, text_features=None, min_count=5, vocabulary=None)
def load_coco(
    root,
    *,
    strict: bool = False,
    subsets: str | None = None,
    images_dir: str | None = None,
    captions: str = "all",
    opts: SourceOptions,
    **unused,
) -> PairedDataset:
    """MS-COCO: captions_*.json + instances_*.json + image folders; one pair per caption, 80 labels."""
    check_options("coco", load_coco, unused)
    root = Path(root)
    mode = choice(captions, "captions", ("all", "first"))
    wanted = as_list(subsets)
    ann_dir = _annotation_dir(root, wanted)
    if not wanted:
        wanted = sorted(p.stem[len("captions_"):] for p in ann_dir.glob("captions_*.json"))

    report = LoadReport("coco")
    ids, texts, paths, groups, label_rows, subset_of = [], [], [], [], [], []
    categories: dict[int, int] | None = None
    cat_list: list[tuple[int, str]] = []
    row = 0
    for subset in wanted:
        cap_path = ann_dir / f"captions_{subset}.json"
        caps = _read_json(cap_path)
        files, labels, cat_list, categories = _images_and_labels(subset, ann_dir, caps, categories)
        folder = Path(images_dir.replace("{subset}", subset)) if images_dir else Path(subset)
        folder = folder if folder.is_absolute() else root / folder
        anns = sorted(
            ((int(a.get("image_id", -1)), int(a.get("id", k)), k, str(a.get("caption") or "").strip()) for k, a in enumerate(caps["annotations"])),
        )
        if mode == "first":
            firsts, seen = [], set()
            for a in anns:
                if a[0] not in seen:
                    seen.add(a[0])
                    firsts.append(a)
            anns = firsts
        report.n_listed += len(anns)
        checker = ImageChecker("coco", report, strict=strict, check=opts.check_images, total=len(files))
        try:
            for image_id, cap_id, k, caption in anns:
                rid = f"{subset}/{image_id}#{cap_id}"
                where = f"{cap_path.name} annotations[{k}]"
                r, row = row, row + 1
                if image_id not in files:
                    if strict:
                        raise strict_row_error("coco", f"{cap_path}, annotations[{k}]", f"image_id {image_id} is not in 'images'")
                    report.drop(r, rid, "malformed_row", f"{where}: image_id {image_id} is not in 'images'")
                    continue
                if not caption:
                    report.drop(r, rid, "no_text", f"{where}: empty caption")
                    continue
                labs = labels.get(image_id, set())
                if not labs and not opts.keep_unlabeled:
                    if strict:
                        raise strict_row_error("coco", f"{cap_path}, annotations[{k}]", f"image {files[image_id]} has no instance annotation (no labels)")
                    report.drop(r, rid, "no_labels", f"{where}: image {files[image_id]} has no instance")
                    continue
                path = folder / files[image_id]
                if checker(r, rid, path, where):
                    ids.append(rid)
                    texts.append(caption)
                    paths.append(os.fspath(path))
                    groups.append(f"{subset}/{files[image_id]}")
                    label_rows.append(sorted(labs))
                    subset_of.append(subset)
        finally:
            checker.close()
    finish_report(report, len(ids))

    label_matrix = np.zeros((len(ids), len(cat_list)), dtype=np.uint8)
    for i, labs in enumerate(label_rows):
        label_matrix[i, labs] = 1
    sub_arr = np.asarray(subset_of, dtype=str)
    official = {s: np.flatnonzero(sub_arr == s) for s in wanted}
    meta = {"source": "coco", "root": str(root), "annotations": str(ann_dir), "subsets": wanted, "captions": mode}
    # text features over the kept captions (texts_all = the kept ones), as this reader always did
    return assemble(
        "coco", opts=opts, ids=ids, paths=paths, texts_all=texts, kept=np.arange(len(texts)), text_kind="sentence", meta=meta,
        report=report, labels=label_matrix, label_names=[name for _, name in cat_list], groups=np.asarray(groups, dtype=str),
        official_splits=official,
    )
