"""kfac_teach.data.digits: sklearn's 8×8 digits, optionally up-scaled to 16×16."""
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
