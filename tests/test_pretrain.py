"""Pretraining data (CIFAR through torchvision on generated archives, digits) and the weight
transfer into a student with a fresh head."""

import urllib.error

import numpy as np
import pytest
import torch
import torchvision.datasets as tvd

from tests.conftest import make_cifar
from tinycls.models import build_model
from tinycls.pretrain import head_names, load_cifar, load_digits, transfer_pretrained

ARCH = "pytorchcv:shufflenet_g3_wd4"


def test_cifar10_and_100_load_through_torchvision(tmp_path, monkeypatch):
    root = make_cifar(tmp_path / "cifar", monkeypatch, per_class=3)
    c10 = load_cifar("cifar10", root, download=False)
    assert c10.train[0].shape == (30, 32, 32, 3) and c10.train[0].dtype == np.uint8
    assert sorted(np.bincount(c10.train[1])) == [3] * 10 and c10.classes[0] == "c10_0"
    assert len(c10.val[0]) == 30
    c100 = load_cifar("cifar100", root, download=False, max_per_class=2)
    assert c100.train[0].shape == (200, 32, 32, 3) and len(c100.classes) == 100
    assert c100.classes[7] == "c100_7" and np.bincount(c100.train[1]).max() == 2


def test_cifar_pixels_keep_the_pickle_layout(tmp_path, monkeypatch):
    import pickle

    root = make_cifar(tmp_path / "cifar", monkeypatch)
    raw = pickle.loads((root / "cifar-10-batches-py" / "test_batch").read_bytes(), encoding="latin1")
    got = load_cifar("cifar10", root, download=False).val[0]
    assert np.array_equal(got[0, :, :, 1], raw["data"][0, 1024:2048].reshape(32, 32))  # green plane


def test_no_copy_and_no_download_is_a_clear_error(tmp_path):
    with pytest.raises(RuntimeError) as e:
        load_cifar("cifar10", tmp_path / "nowhere", download=False)
    msg = str(e.value)
    assert "nowhere/cifar-10-batches-py does not exist" in msg and "Download is off" in msg
    assert "cifar-10-python.tar.gz" in msg and "[pretrain].cifar_root" in msg


def test_offline_download_failure_is_a_clear_error(tmp_path, monkeypatch):
    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(tvd.CIFAR100, "download", offline)
    with pytest.raises(RuntimeError, match=r"cifar100: no copy under \S+ and the download failed \(URLError"):
        load_cifar("cifar100", tmp_path, download=True)


def test_corrupted_copy_is_named(tmp_path, monkeypatch):
    root = make_cifar(tmp_path / "cifar", monkeypatch)
    (root / "cifar-10-batches-py" / "data_batch_3").write_bytes(b"truncated")
    with pytest.raises(RuntimeError, match="cifar-10-batches-py is corrupted or incomplete"):
        load_cifar("cifar10", root, download=False)


def test_digits_are_offline_uint8_rgb():
    d = load_digits(seed=0)
    assert d.train[0].shape[1:] == (8, 8, 3) and d.train[0].dtype == np.uint8 and d.train[0].max() == 255
    assert len(d.train[0]) + len(d.val[0]) == 1797 and d.classes == [str(i) for i in range(10)]
    assert set(np.unique(d.val[1])) == set(range(10))  # stratified
    assert np.array_equal(load_digits(seed=0).val[1], d.val[1])


def test_transfer_copies_the_body_and_reinitializes_the_head():
    torch.manual_seed(0)
    source = build_model(ARCH, 10)
    torch.manual_seed(1)
    target = build_model(ARCH, 10)  # same class count: the head would fit, but must not be copied
    head = head_names(target)
    assert head == {"output.conv.weight"}
    fresh = {k: v.clone() for k, v in target.state_dict().items()}
    t = transfer_pretrained(target, source.state_dict(), "ckpt")
    after, src = target.state_dict(), source.state_dict()
    assert t.transferred == len(src) - 1 and t.skipped == 1 and t.head == ["output.conv.weight"]
    assert torch.equal(after["output.conv.weight"], fresh["output.conv.weight"])
    body = [k for k in src if k not in head]
    assert all(torch.equal(after[k], src[k]) for k in body)


def test_transfer_from_another_architecture_fails_unless_allowed():
    other = build_model("timm:mobilenetv3_small_050", 10).state_dict()
    target = build_model(ARCH, 3)
    with pytest.raises(ValueError, match=r"other.pt: none of its \d+ tensors fit this model"):
        transfer_pretrained(target, other, "other.pt")
    t = transfer_pretrained(target, other, "other.pt", allow_none=True)
    assert t.transferred == 0 and t.skipped == len(other)


def test_timm_head_is_the_conv_head():
    assert head_names(build_model("timm:mobilenetv3_small_050", 4)) == {"head.conv.weight"}


def test_an_untouched_tar_gz_is_read_offline(tmp_path, monkeypatch):
    import hashlib
    import shutil
    import tarfile

    root = make_cifar(tmp_path / "cifar", monkeypatch)
    archive = root / tvd.CIFAR10.filename
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(root / "cifar-10-batches-py", arcname="cifar-10-batches-py")
    shutil.rmtree(root / "cifar-10-batches-py")
    monkeypatch.setattr(tvd.CIFAR10, "tgz_md5", hashlib.md5(archive.read_bytes()).hexdigest())
    for name in ("_get_redirect_url", "_urlretrieve"):  # what torchvision calls to go online
        monkeypatch.setattr(f"torchvision.datasets.utils.{name}", lambda *a, **k: pytest.fail("went online"))
    assert len(load_cifar("cifar10", root, download=False).train[0]) == 20


def test_bookkeeping_tensors_alone_are_not_a_transfer():
    # x0.5 and x0.25 ShuffleNets share module names; only BatchNorm's counters match in shape
    wider = build_model("pytorchcv:shufflenet_g3_wd2", 10).state_dict()
    with pytest.raises(ValueError, match="none of its .* tensors fit this model"):
        transfer_pretrained(build_model(ARCH, 3), wider, "wd2.pt")
