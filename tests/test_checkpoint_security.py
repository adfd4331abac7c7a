"""Hostile checkpoint files: nothing in them runs or changes code, broken weights are refused."""

from __future__ import annotations

import io
import pickle
import warnings
import zipfile
from pathlib import Path

import pytest
import torch
import torch._utils

from model.build import build_model
from model.checkpoint import CheckpointError, load_checkpoint, read_checkpoint, save_checkpoint


class _Echo(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + 1


def _tiny_model():
    return build_model("segformer_b0", with_prev_mask=True, head_channels=32)


def _with_data_pkl(source: Path, target: Path, data_pkl: bytes) -> None:
    """A copy of the torch.save archive ``source`` whose ``data.pkl`` is replaced by ``data_pkl``."""
    with zipfile.ZipFile(source) as src, zipfile.ZipFile(target, "w", zipfile.ZIP_STORED) as dst:
        for info in src.infolist():
            data = data_pkl if info.filename.endswith("/data.pkl") else src.read(info)
            dst.writestr(info, data)


def test_torchscript_archive_is_refused_before_any_torch_loader(tmp_path, monkeypatch) -> None:
    path = tmp_path / "model.pth"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.jit.save(torch.jit.script(_Echo()), str(path))

    calls: list[str] = []

    def forbidden(*args, **kwargs):
        calls.append("loader")
        raise RuntimeError("loader called")

    monkeypatch.setattr(torch.jit, "load", forbidden)
    monkeypatch.setattr(torch, "load", forbidden)
    with pytest.raises(CheckpointError, match="TorchScript archive, which can run code"):
        read_checkpoint(path)
    assert calls == []


def test_archive_with_unknown_entries_and_tar_are_refused(tmp_path) -> None:
    good = tmp_path / "good.pth"
    save_checkpoint(_tiny_model(), good)
    extra = tmp_path / "extra.pth"
    with zipfile.ZipFile(good) as src, zipfile.ZipFile(extra, "w") as dst:
        for info in src.infolist():
            dst.writestr(info, src.read(info))
        prefix = src.namelist()[0].split("/")[0]
        dst.writestr(f"{prefix}/extra.pkl", b"x")
    with pytest.raises(CheckpointError, match="unexpected entry"):
        read_checkpoint(extra)
    tar = tmp_path / "legacy.pth"
    tar.write_bytes(b"\0" * 257 + b"ustar" + b"\0" * 300)
    with pytest.raises(CheckpointError, match="tar"):
        read_checkpoint(tar)
    assert load_checkpoint(good).arch == "segformer_b0"


def _build_pickle(module: str, name: str, attribute: str) -> bytes:
    """GLOBAL module.name; BUILD with slot state {attribute: 1} (sets an attribute on the global)."""
    return (
        pickle.PROTO + b"\x02"
        + pickle.GLOBAL + f"{module}\n{name}\n".encode()
        + pickle.NONE + pickle.EMPTY_DICT
        + pickle.SHORT_BINUNICODE + bytes([len(attribute)]) + attribute.encode()
        + pickle.BININT1 + b"\x01" + pickle.SETITEM
        + pickle.TUPLE2 + pickle.BUILD + pickle.STOP
    )  # fmt: skip


@pytest.mark.parametrize(
    ("module", "name", "target"),
    [
        ("torch._utils", "_rebuild_tensor_v2", lambda: torch._utils._rebuild_tensor_v2),
        ("torch", "FloatStorage", lambda: torch.FloatStorage),
    ],
)
def test_pickle_cannot_modify_allowed_globals(tmp_path, module, name, target) -> None:
    good = tmp_path / "good.pth"
    save_checkpoint(_tiny_model(), good)
    evil = tmp_path / "evil.pth"
    _with_data_pkl(good, evil, _build_pickle(module, name, "isegformer_poisoned"))
    with pytest.raises(CheckpointError):
        read_checkpoint(evil)
    assert not hasattr(target(), "isegformer_poisoned")
    # later loads are unaffected
    model = load_checkpoint(good)
    assert torch.isfinite(next(model.parameters())).all()


def test_nan_weights_are_refused_with_a_clear_message(tmp_path) -> None:
    model = _tiny_model()
    with torch.no_grad():
        next(model.network.head.parameters()).fill_(float("nan"))
    path = tmp_path / "nan.pth"
    save_checkpoint(model, path)
    with pytest.raises(CheckpointError, match="NaN"):
        load_checkpoint(path)


def test_saved_checkpoint_round_trip_is_unchanged_by_the_checks(tmp_path) -> None:
    model = _tiny_model().eval()
    path = tmp_path / "ok.pth"
    save_checkpoint(model, path)
    loaded = load_checkpoint(path)
    image = torch.rand(1, 4, 64, 64)
    points = torch.tensor([[[32.0, 32.0, 0.0], [-1.0, -1.0, -1.0]]])
    with torch.no_grad():
        assert torch.allclose(model(image, points)["instances"], loaded(image, points)["instances"])
    buffer = io.BytesIO(path.read_bytes())
    assert zipfile.is_zipfile(buffer)
