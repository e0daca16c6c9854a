"""Search an index by raw text or image with the model that made it: ``cmhash.open_index(PATH)``.

::

    import cmhash
    index = cmhash.open_index("f8k64.index")             # its model is the checkpoint it was built from
    for hit in index.search_text("a dog runs on the beach", k=10):
        print(hit.rank, hit.id, hit.distance, hit.text, hit.image)
    index.search_image("photo.jpg", k=10)                # image -> texts

An index whose checkpoint was retrained since it was built refuses the new model
(:mod:`cmhash.inference.provenance`). See docs/search.md.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from cmhash.errors import DataError
from cmhash.inference.model import Model, load


@dataclass
class Hit:
    """One search result: the item id, its Hamming distance and what is known about it."""

    rank: int
    id: Any
    distance: int
    modality: str  # the codes it matched: "image" (a picture) or "text" (a caption/tag line)
    text: str | None = None
    image: str | None = None
    texts: list[str] | None = None  # caption datasets: every caption of the image
    labels: list | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "rank": self.rank, "id": self.id, "distance": self.distance, "modality": self.modality, "text": self.text,
            "image": self.image, "texts": self.texts, "labels": self.labels,
            **{k: v for k, v in self.metadata.items() if k not in ("text", "image", "texts", "labels")},
        }


class Index:
    """A cross-modal index with the model that made it: search by raw text or image, add and remove items."""

    def __init__(self, index, path: str | os.PathLike | None = None, model: Model | str | os.PathLike | None = None):
        self.index = index
        self.path = Path(path) if path is not None else None
        self._model = model if isinstance(model, Model) or model is None else load(model)
        self._model_path = None if isinstance(model, Model) or model is None else model
        self._lock = threading.RLock()
        self._checked: tuple | None = None  # file signature of the query model at its last passed check

    # ------------------------------------------------------------------ model
    @property
    def info(self) -> dict[str, Any]:
        return self.index.info

    @property
    def model(self) -> Model:
        """The query model: the given one, else the checkpoint recorded in the index (content checked)."""
        from cmhash.inference.provenance import check_query_model

        if self._model is None:
            ckpt = self.info.get("checkpoint")
            if not ckpt:
                raise DataError(
                    f"{self.path or 'index'}: built from a codes file, so it names no model; open it with "
                    "cmhash.open_index(PATH, model=RUN) to search by text or image"
                )
            self._model = load(ckpt)
        # every query asks: re-hash (a cached lookup, but stat + resolve + is_dir cost ~60 us) only
        # when the checkpoint file's identity or size/mtime changed since the last passed check
        signature = _file_signature(self._model.path)
        if signature is None or signature != self._checked:
            check_query_model(self.info, self._model.path, where=str(self.path or "index"))
            if self._model.bits != self.index.bits:
                raise DataError(f"the model makes {self._model.bits}-bit codes but the index holds {self.index.bits}-bit codes")
            self._checked = signature
        return self._model

    def read_text(self, text: str) -> str:
        """The query as the model reads it (:meth:`Model.read_text`), without re-checking the model's file:
        reading only consults its vocabulary; the content check runs when the query is encoded."""
        model = self._model if self._model is not None else self.model
        return model.read_text(text)

    # ------------------------------------------------------------------ search
    def search_codes(self, codes, k: int = 10, target: str = "image") -> list[list[Hit]]:
        """Per query row, the ranked hits among the ``target`` codes."""
        with self._lock:
            raw = self.index.search_hits(codes, k, target=target)
        return [[_hit(h) for h in row] for row in raw]

    def search_text(self, text: str | Sequence[str], k: int = 10, target: str = "image") -> list[Hit] | list[list[Hit]]:
        """Text -> images (or ``target="text"``: similar texts). One text gives one list of hits."""
        single = isinstance(text, str)
        hits = self.search_codes(self.model.encode_text(text), k, target)
        return hits[0] if single else hits

    def search_image(self, image: Any, k: int = 10, target: str = "text") -> list[Hit] | list[list[Hit]]:
        """Image (path, bytes or PIL) -> texts (or ``target="image"``: similar images)."""
        single = not isinstance(image, (list, tuple))
        hits = self.search_codes(self.model.encode_image(image), k, target)
        return hits[0] if single else hits

    def get(self, item) -> dict[str, Any]:
        """An item's metadata (text, image path, labels) and which codes it has."""
        with self._lock:
            found = self.index.contains([item])
            if not found[0]:
                raise KeyError(item)
            owner = self.index.owner_of(item) if self.index.per_modality_items else None
            meta = self.index.get_metadata([item], modality=owner)[0] if owner else self.index.get_metadata([item])[0]
        return {"id": item, "modality": owner or "both", **(meta or {})}

    def __len__(self) -> int:
        return self.index.count

    def describe(self) -> dict[str, Any]:
        return self.index.describe()

    # ------------------------------------------------------------------ updates
    def add(self, item_id, *, text: str | None = None, image: Any = None, metadata: dict | None = None, save: bool = True) -> dict[str, Any]:
        """Encode and add one item (text and image; caption indexes take either), then save atomically."""
        meta = dict(metadata or {})
        if text is not None:
            meta["text"] = text
        if isinstance(image, (str, os.PathLike)):
            meta.setdefault("image", str(image))
        m = self.model
        with self._lock:
            if self.index.contains([item_id])[0]:
                raise DataError(f"id {item_id!r} is already in the index; DELETE it first")
            if self.index.per_modality_items:
                if (text is None) == (image is None):
                    raise DataError("this index keeps images and captions as separate items: give a text or an image")
                modality = "text" if text is not None else "image"
                codes = m.encode_text(text) if text is not None else m.encode_image(image)
                self.index.add_modality(modality, [item_id], codes, metadata=[meta])
            else:
                need = [mod for mod in self.index.modalities if {"text": text, "image": image}[mod] is None]
                if need:
                    raise DataError(f"this index holds {' and '.join(self.index.modalities)} codes of every item; give the {' and '.join(need)} too")
                codes = {mod: (m.encode_text(text) if mod == "text" else m.encode_image(image)) for mod in self.index.modalities}
                self.index.add([item_id], image_codes=codes.get("image"), text_codes=codes.get("text"), metadata=[meta])
            if save:
                self.save()
        return {"id": item_id, **meta}

    def remove(self, item_id, save: bool = True) -> None:
        with self._lock:
            if not self.index.contains([item_id])[0]:
                raise KeyError(item_id)
            self.index.remove([item_id])
            if save:
                self.save()

    def save(self, path: str | os.PathLike | None = None) -> Path:
        """Write the index atomically (a crash mid-save keeps the previous file) and flush remote backends."""
        dest = Path(path) if path is not None else self.path
        if dest is None:
            raise DataError("the index has no file; give a path to save()")
        with self._lock:
            self.index.flush()
            return self.index.save(dest)

    def close(self) -> None:
        self.index.close()

    def __repr__(self) -> str:
        return f"<cmhash.Index {self.index!r} file={self.path}>"


def _file_signature(path) -> tuple | None:
    """(device, inode, size, mtime_ns) of a file, or None when it cannot be read."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


def _hit(h: dict) -> Hit:
    meta = dict(h.get("metadata") or {})
    return Hit(
        rank=h["rank"], id=h["id"], distance=h["distance"], modality=h["matched"], text=meta.get("text"),
        image=meta.get("image"), texts=meta.get("texts"), labels=meta.get("labels"), metadata=meta,
    )


def open_index(path: str | os.PathLike, model: Model | str | os.PathLike | None = None, **overrides: Any) -> Index:
    """Open an index file from `cmhash index build`; ``model`` overrides the checkpoint it records."""
    from cmhash.index import CrossModalIndex, load_index

    ix = load_index(path, **overrides)
    if not isinstance(ix, CrossModalIndex):
        raise DataError(f"{path}: a plain code index (no image/text collection); use cmhash.index.load_index")
    return Index(ix, path, model)


__all__ = ["Hit", "Index", "open_index"]
