"""Reading MATLAB ``.mat`` variables the way the DCMH/DJSRH data files store them.

A ``.mat`` file is either MATLAB v5 (read with :func:`scipy.io.loadmat`) or v7.3, which is an
HDF5 file (read with h5py). MATLAB arrays are column-major, so h5py sees every v7.3 array with
its axes reversed: an N x D matrix comes back D x N, and an H x W x C x N image stack comes back
N x C x W x H (hence DJSRH's ``np.transpose(IAll[i], (2, 1, 0))``). :func:`read_matrix` undoes
this and then orients the matrix so that rows are pairs, checking against the expected number of
pairs when given. Errors name the file and the variable and list the variables the file holds.
"""

from __future__ import annotations

import contextlib
import os

from pathlib import Path
import numpy as np

from cmhash.data.images import ArrayImageStore, HDF5ImageStore, ImageStore, open_h5_readonly
from cmhash.errors import DataError, MissingFileError

_SKIP = ("#refs#", "#subsystem#")


def is_v73(path: Path) -> bool:
    """True for a MATLAB v7.3 (HDF5) file."""
    import h5py

    return bool(h5py.is_hdf5(str(path)))


@contextlib.contextmanager
def _h5(path: Path):
    """A v7.3 file opened read-only; a truncated or damaged file is a DataError naming it, not h5py's OSError."""
    try:
        fh = open_h5_readonly(path)
    except OSError as exc:
        raise DataError(f"{path}: cannot read this MATLAB v7.3 (HDF5) file; it is truncated or damaged ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})") from exc
    try:
        with fh:
            yield fh
    except OSError as exc:
        raise DataError(f"{path}: cannot read this MATLAB v7.3 (HDF5) file; it is truncated or damaged ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})") from exc


def _check_exists(path: Path) -> None:
    if not Path(path).is_file():
        raise MissingFileError(f"{path}: .mat file not found")


def mat_variables(path: Path) -> list[str]:
    """Names of the variables stored in a v5 or v7.3 ``.mat`` file."""
    _check_exists(path)
    if is_v73(path):
        with _h5(path) as fh:
            return [k for k in fh.keys() if k not in _SKIP]
    import scipy.io as sio

    try:
        names = [name for name, _shape, _cls in sio.whosmat(str(path))]
    except Exception as exc:
        raise DataError(f"{path}: cannot read as a MATLAB .mat file ({exc})") from exc
    if _v5_truncated(path):
        raise DataError(f"{path}: this MATLAB .mat file is truncated or damaged (its last variable ends past the end of the file); copy it again")
    return names


def _v5_truncated(path: Path) -> bool:
    """True when a v5 file's variables run past its end (a partial copy or download).

    ``whosmat`` stops quietly at the cut, so the variables after it would look merely "missing".
    """
    try:
        from scipy.io.matlab._mio5 import MatFile5Reader
    except ImportError:  # pragma: no cover - another scipy layout: skip the check
        return False
    size = os.path.getsize(path)
    try:
        with open(path, "rb") as fh:
            reader = MatFile5Reader(fh)
            reader.mat_stream.seek(0)
            reader.initialize_read()
            reader.mat_stream.seek(128)
            while not reader.end_of_stream():
                _hdr, next_pos = reader.read_var_header()
                if next_pos > size:
                    return True
                reader.mat_stream.seek(next_pos)
    except Exception:  # noqa: BLE001 - an unreadable header: loadmat reports it
        return False
    return False


def _missing(path: Path, var: str, found: list[str], option: str | None) -> DataError:
    hint = f"; pass the right name with option {option}" if option else ""
    return DataError(f"{path}: no variable '{var}' (the file holds: {', '.join(found) or 'nothing'}){hint}")


def pick_variable(path: Path, candidates: list[str], option: str | None = None) -> str:
    """The first of ``candidates`` stored in ``path``; an error listing what is there otherwise."""
    found = mat_variables(path)
    for c in candidates:
        if c in found:
            return c
    raise _missing(path, " or ".join(candidates), found, option)


def _read_raw(path: Path, var: str, option: str | None, dtype=None) -> tuple[np.ndarray, bool]:
    """The stored array in MATLAB axis order (n x d stays n x d); second item: was it v7.3.

    ``dtype`` converts while reading from HDF5, so a 186,577 x 1,000 double ``YAll`` never sits
    in memory as float64 when float32 is wanted.
    """
    _check_exists(path)
    if is_v73(path):
        import h5py

        with _h5(path) as fh:
            if var not in fh:
                raise _missing(path, var, [k for k in fh.keys() if k not in _SKIP], option)
            node = fh[var]
            if isinstance(node, h5py.Group):
                if "MATLAB_sparse" in node.attrs and {"data", "ir", "jc"} <= set(node.keys()):
                    import scipy.sparse as sp

                    n_rows = int(node.attrs["MATLAB_sparse"])
                    jc = node["jc"][()]
                    mat = sp.csc_matrix((node["data"][()], node["ir"][()], jc), shape=(n_rows, len(jc) - 1))
                    return mat.toarray(), True
                raise DataError(f"{path}: variable '{var}' is a MATLAB struct/group, not a numeric array")
            cls = node.attrs.get("MATLAB_class", b"")
            cls = cls.decode() if isinstance(cls, bytes) else str(cls)
            if cls in ("cell", "struct", "char") or node.dtype.kind not in "biuf":
                raise DataError(f"{path}: variable '{var}' is a MATLAB {cls or node.dtype} array, not a numeric matrix")
            if node.ndim == 2:
                return _read_transposed(node, dtype), True
            arr = node.astype(dtype)[()] if dtype is not None and node.dtype != dtype else node[()]
            return np.transpose(arr), True  # undo column-major storage
    import scipy.io as sio

    try:
        mat = sio.loadmat(str(path), variable_names=[var])
    except Exception as exc:
        raise DataError(f"{path}: cannot read as a MATLAB .mat file ({exc})") from exc
    if var not in mat:
        listed = mat_variables(path)
        if var in listed:  # the header lists it but its data is cut off
            raise DataError(f"{path}: variable '{var}' is listed but its data cannot be read; the file is truncated or damaged")
        raise _missing(path, var, listed, option)
    arr = mat[var]
    if hasattr(arr, "toarray"):  # scipy sparse
        arr = arr.toarray()
    arr = np.asarray(arr)
    if arr.dtype.kind not in "biuf":
        raise DataError(f"{path}: variable '{var}' is a MATLAB {arr.dtype} array (cell/struct/char), not a numeric matrix")
    return arr, False


def _read_transposed(node, dtype, block: int = 16384) -> np.ndarray:
    """A 2-D h5py dataset (d x n, as MATLAB stores an n x d matrix) as a C-ordered n x d array.

    Read in blocks of columns straight into the output, so peak memory is the output plus one
    block (not the stored array, its transposed copy and a converted copy).
    """
    d, n = node.shape
    out = np.empty((n, d), dtype=node.dtype if dtype is None else dtype)
    for start in range(0, n, block):
        stop = min(n, start + block)
        out[start:stop] = node[:, start:stop].T
    return out


def read_matrix(path: Path, var: str, *, n: int | None = None, dtype=np.float32, option: str | None = None) -> np.ndarray:
    """Read a 2-D numeric variable as (pairs x dims) in ``dtype``.

    With ``n`` (the number of pairs, e.g. from another file) a matrix stored the other way round
    is transposed, and a matrix with neither side equal to ``n`` is an error. NaN/inf values are an
    error naming the row and column.
    """
    arr, _v73 = _read_raw(path, var, option, dtype=np.dtype(dtype))
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2:
        raise DataError(f"{path}: variable '{var}' has shape {arr.shape}; expected a 2-D (pairs x dims) matrix")
    if n is not None and arr.shape[0] != n:
        if arr.shape[1] == n:
            arr = arr.T
        else:
            raise DataError(f"{path}: variable '{var}' has shape {arr.shape}, but the dataset has {n} pairs (neither side matches)")
    out = np.ascontiguousarray(arr, dtype=dtype)
    if out.dtype.kind == "f":
        bad = ~np.isfinite(out)
        if bad.any():
            row, col = np.argwhere(bad)[0]
            raise DataError(f"{path}: variable '{var}', row {row}, column {col} is {out[row, col]} (NaN/inf values are not allowed)")
    return out


def read_labels(path: Path, var: str, *, n: int | None = None, option: str | None = None) -> np.ndarray:
    """A 0/1 label matrix (pairs x classes) as uint8; other values are an error naming the row."""
    lab = read_matrix(path, var, n=n, dtype=np.float64, option=option)
    ok = np.isin(lab, (0.0, 1.0))
    if not ok.all():
        row, col = np.argwhere(~ok)[0]
        raise DataError(f"{path}: variable '{var}', row {row}, column {col} is {lab[row, col]}; labels must be 0/1")
    return lab.astype(np.uint8)


def _auto_layout(item_shape: tuple[int, ...], path: Path, var: str) -> str:
    """Guess the per-image axis order (h5py view) from where the channel axis (size 3 or 1) is."""
    if len(item_shape) == 2:
        return "HW"
    if len(item_shape) != 3:
        raise DataError(f"{path}: variable '{var}' holds items of shape {item_shape}; expected images (3-D per item)")
    if item_shape[0] in (1, 3) and item_shape[2] not in (1, 3):
        return "CWH"  # MATLAB H x W x C x N seen through h5py: N x C x W x H (DJSRH/DCMH files)
    if item_shape[2] in (1, 3) and item_shape[0] not in (1, 3):
        return "HWC"
    if item_shape[0] in (1, 3):
        return "CWH"
    raise DataError(f"{path}: cannot tell the channel axis of images of shape {item_shape} in '{var}'; pass image_layout (e.g. CWH or HWC)")


def open_images(path: Path, var: str, *, n: int | None = None, layout: str = "auto", option: str | None = None) -> ImageStore:
    """An image store over an ``IAll``-style variable.

    v7.3 files stay on disk (a lazy :class:`HDF5ImageStore`, items as h5py sees them, default
    layout ``CWH`` as DJSRH reads them). A v5 file is loaded into memory: MATLAB's
    H x W x C x N stack is moved to N x H x W x C.
    """
    _check_exists(path)
    if is_v73(path):
        import h5py

        with _h5(path) as fh:
            if var not in fh:
                raise _missing(path, var, [k for k in fh.keys() if k not in _SKIP], option)
            node = fh[var]
            if not isinstance(node, h5py.Dataset) or node.ndim not in (3, 4):
                raise DataError(f"{path}: variable '{var}' is not an image stack (shape {getattr(node, 'shape', None)})")
            shape = tuple(node.shape)
        if n is not None and shape[0] != n:
            raise DataError(f"{path}: variable '{var}' holds {shape[0]} images (shape {shape}) but the dataset has {n} pairs")
        lay = _auto_layout(shape[1:], path, var) if layout == "auto" else layout.upper()
        return HDF5ImageStore(path, var, rows=range(shape[0]), layout=lay)
    arr, _ = _read_raw(path, var, option)
    if arr.ndim not in (3, 4):
        raise DataError(f"{path}: variable '{var}' has shape {arr.shape}; expected an H x W x C x N image stack")
    stack = np.moveaxis(arr, -1, 0)  # MATLAB stores the image index last
    if n is not None and stack.shape[0] != n:
        raise DataError(f"{path}: variable '{var}' holds {stack.shape[0]} images (shape {arr.shape}) but the dataset has {n} pairs")
    lay = ("HWC" if stack.ndim == 4 else "HW") if layout == "auto" else layout.upper()
    return ArrayImageStore(stack, layout=lay, name=f"{path}:{var}")


def count_rows(path: Path, var: str, option: str | None = None) -> int:
    """Number of items of an image stack without reading it (N is the first h5py / last v5 axis)."""
    _check_exists(path)
    if is_v73(path):
        with _h5(path) as fh:
            if var not in fh:
                raise _missing(path, var, [k for k in fh.keys() if k not in _SKIP], option)
            return int(fh[var].shape[0])
    import scipy.io as sio

    for name, shape, _cls in sio.whosmat(str(path)):
        if name == var:
            return int(shape[-1])
    raise _missing(path, var, mat_variables(path), option)

