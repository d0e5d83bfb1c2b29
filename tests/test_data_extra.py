"""kfac_teach.data: the CURVES generator, the IDX/MNIST reader and the autoencoder data sets."""
import gzip
import struct

import pytest
import torch

import kfac_teach.data as data


# ---------------------------------------------------------------------------------------- CURVES

def test_curves_shape_range_dtype():
    X = data.curves(64, seed=3)
    assert X.shape == (64, 784) and X.dtype == torch.float32
    assert float(X.min()) == 0.0 and float(X.max()) <= 1.0
    assert bool(torch.isfinite(X).all())
    on = (X > 0.5).sum(1)
    assert int(on.min()) >= 3                     # every image shows a stroke...
    assert float((X > 0).float().mean()) < 0.4    # ...on a mostly black background


def test_curves_deterministic_and_seeded():
    a, b = data.curves(16, seed=7), data.curves(16, seed=7)
    assert torch.equal(a, b)
    assert not torch.equal(a, data.curves(16, seed=8))
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    assert torch.equal(data.curves(8, generator=g1), data.curves(8, generator=g2))
    # a prefix of a larger draw is the smaller draw (same points, chunking does not matter)
    assert torch.equal(data.curves(40, seed=1, chunk=7)[:8], data.curves(8, seed=1))


def test_curve_passes_near_its_three_points():
    X, P = data.curves(50, seed=0, return_points=True)
    assert P.shape == (50, 3, 2)
    img = X.reshape(50, 28, 28)
    pad = torch.nn.functional.pad(img, (1, 1, 1, 1))
    n = torch.arange(50)
    for k in range(3):
        col, row = P[:, k, 0].round().long(), P[:, k, 1].round().long()
        # profile exp(-d²/2w²), w = 0.7: the pixel containing the point is within 0.71 px of the curve
        assert float(img[n, row, col].min()) > 0.3, k
        # and the brightest pixel of its 3×3 neighbourhood is on the stroke
        nbh = torch.stack([pad[n, row + 1 + dr, col + 1 + dc] for dr in (-1, 0, 1) for dc in (-1, 0, 1)])
        assert float(nbh.amax(0).min()) > 0.6, k
    # and far from every point of the curve the image is dark: the corners are empty
    assert float(img[:, 0, 0].max()) == 0.0 and float(img[:, -1, -1].max()) == 0.0


def test_curves_other_size_and_bad_arguments():
    assert data.curves(3, size=16).shape == (3, 256)
    assert data.curves(0).shape == (0, 784)
    with pytest.raises(ValueError):
        data.curves(-1)
    with pytest.raises(ValueError):
        data.curves(2, size=3)
    with pytest.raises(ValueError):
        data.curves(2, width=0)
    with pytest.raises(TypeError):
        data.curves(2, generator=3)


# ------------------------------------------------------------------------------------------ IDX

def idx_bytes(arr_bytes, shape, type_code=0x08):
    return bytes([0, 0, type_code, len(shape)]) + b"".join(struct.pack(">I", d) for d in shape) + arr_bytes


@pytest.fixture
def tiny_mnist(tmp_path):
    g = torch.Generator().manual_seed(0)
    imgs = torch.randint(0, 256, (5, 4, 3), generator=g, dtype=torch.uint8)
    labels = torch.tensor([3, 1, 4, 1, 5], dtype=torch.uint8)
    pi, pl = tmp_path / "imgs-idx3-ubyte", tmp_path / "labels-idx1-ubyte.gz"
    pi.write_bytes(idx_bytes(imgs.numpy().tobytes(), (5, 4, 3)))
    pl.write_bytes(gzip.compress(idx_bytes(labels.numpy().tobytes(), (5,))))
    return pi, pl, imgs, labels


def test_read_idx_raw_and_gz(tiny_mnist, tmp_path):
    pi, pl, imgs, labels = tiny_mnist
    a = data.read_idx(pi)
    assert a.dtype == torch.uint8 and torch.equal(a, imgs)
    assert torch.equal(data.read_idx(str(pl)), labels)
    gz = tmp_path / "imgs.gz"
    gz.write_bytes(gzip.compress(pi.read_bytes()))
    assert torch.equal(data.read_idx(gz), imgs)


def test_read_idx_other_types(tmp_path):
    v = torch.tensor([[1.5, -2.0], [3.25, 0.0]], dtype=torch.float32)
    p = tmp_path / "f.idx"
    p.write_bytes(idx_bytes(v.numpy().astype(">f4").tobytes(), (2, 2), 0x0D))
    out = data.read_idx(p)
    assert out.dtype == torch.float32 and torch.equal(out, v)
    w = torch.tensor([-7, 70000], dtype=torch.int32)
    p.write_bytes(idx_bytes(w.numpy().astype(">i4").tobytes(), (2,), 0x0C))
    assert torch.equal(data.read_idx(p), w)


def test_mnist_reader(tiny_mnist):
    pi, pl, imgs, labels = tiny_mnist
    X, y = data.mnist(pi, pl)
    assert X.shape == (5, 12) and X.dtype == torch.float32
    torch.testing.assert_close(X, imgs.reshape(5, -1).float() / 255)
    assert y.dtype == torch.int64 and y.tolist() == [3, 1, 4, 1, 5]
    X2, y2 = data.mnist(pi)
    assert torch.equal(X2, X) and y2 is None


def test_mnist_from_folder(tmp_path, tiny_mnist):
    pi, pl, imgs, labels = tiny_mnist
    d = tmp_path / "mn"
    d.mkdir()
    (d / "train-images-idx3-ubyte.gz").write_bytes(gzip.compress(pi.read_bytes()))
    (d / "train-labels-idx1-ubyte").write_bytes(gzip.decompress(pl.read_bytes()))
    X, y = data.mnist(d)
    assert X.shape == (5, 12) and y.tolist() == [3, 1, 4, 1, 5]
    assert torch.equal(data.autoencoder_data("mnist", mnist_path=d), X)
    with pytest.raises(FileNotFoundError, match="never downloads"):
        data.mnist(d, split="test")


@pytest.mark.parametrize("payload, match", [
    (b"\x08\x03\x00\x00" + b"\x00" * 20, "not an IDX file"),                  # bad magic
    (bytes([0, 0, 0x42, 1, 0, 0, 0, 1, 7]), "not an IDX file"),               # unknown type code
    (bytes([0, 0, 8, 3, 0, 0, 0, 5]), "truncated header"),
    (idx_bytes(b"\x01" * 59, (5, 4, 3)), "truncated"),                         # one byte short
    (idx_bytes(b"\x01" * 61, (5, 4, 3)), "unexpected bytes"),
    (b"\x00\x00", "too short"),
])
def test_read_idx_bad_files(tmp_path, payload, match):
    p = tmp_path / "bad"
    p.write_bytes(payload)
    with pytest.raises(ValueError, match=match):
        data.read_idx(p)


def test_read_idx_truncated_gzip_and_missing(tmp_path, tiny_mnist):
    pi = tiny_mnist[0]
    p = tmp_path / "cut.gz"
    p.write_bytes(gzip.compress(pi.read_bytes())[:-12])
    with pytest.raises(ValueError, match="gzip"):
        data.read_idx(p)
    with pytest.raises(FileNotFoundError, match="never downloads"):
        data.read_idx(tmp_path / "nope")


def test_mnist_rejects_mismatched_files(tmp_path, tiny_mnist):
    pi, pl, imgs, labels = tiny_mnist
    with pytest.raises(ValueError, match="labels"):
        data.mnist(pi, pi)                              # images where labels belong
    short = tmp_path / "short-labels"
    short.write_bytes(idx_bytes(b"\x01\x02", (2,)))
    with pytest.raises(ValueError, match="5 images"):
        data.mnist(pi, short)
    with pytest.raises(ValueError, match="images"):
        data.mnist(short)


# -------------------------------------------------------------------------------- autoencoder data

def test_autoencoder_data():
    X = data.autoencoder_data("digits")
    assert X.shape == (1797, 64) and float(X.min()) >= 0 and float(X.max()) <= 1
    assert data.autoencoder_data("curves", n=10).shape == (10, 784)
    assert torch.equal(data.autoencoder_data("curves", n=10), data.curves(10, seed=0))
    with pytest.raises(FileNotFoundError, match="mnist_path"):
        data.autoencoder_data("mnist")
    with pytest.raises(ValueError, match="unknown problem"):
        data.autoencoder_data("faces")
