"""Reading original-format checkpoints: no foreign code runs, bad files give one clear error."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from model.checkpoint import (
    CheckpointError,
    ForeignObject,
    _OriginalPickleModule,
    _RestrictedPickleModule,
    load_checkpoint,
    read_checkpoint,
)


class _Exploit:
    """Pickles as a call of os.system — what a hostile checkpoint would contain."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_pickled_code_is_not_executed(tmp_path: Path):
    marker = tmp_path / "executed"
    path = tmp_path / "evil.pth"
    torch.save({"state_dict": {"w": torch.zeros(1)}, "config": {"class": "x.Y", "params": {
        "payload": {"type": "builtin", "value": _Exploit(marker), "specified": True}}}}, path)
    ckpt = read_checkpoint(path)
    assert not marker.exists()
    assert isinstance(ckpt.params["payload"], ForeignObject)
    with pytest.raises(CheckpointError, match="unsupported model class 'x.Y'"):
        load_checkpoint(path)
    assert not marker.exists()


@pytest.mark.parametrize("protocol", [2, 4])
def test_legacy_pickle_format_is_read_and_still_restricted(tmp_path: Path, protocol: int):
    """Old torch.save files (no zip) pass the header check and go through the same restricted unpickler."""
    marker = tmp_path / "executed"
    path = tmp_path / "legacy.pth"
    torch.save({"state_dict": {"w": torch.arange(3.0)}, "config": {"class": "x.Y", "params": {
        "payload": {"type": "builtin", "value": _Exploit(marker), "specified": True}}}}, path,
        _use_new_zipfile_serialization=False, pickle_protocol=protocol)
    ckpt = read_checkpoint(path)
    assert not marker.exists()
    assert torch.equal(ckpt.state_dict["w"], torch.arange(3.0))
    assert isinstance(ckpt.params["payload"], ForeignObject)


def test_reference_config_is_read_without_isegm(reference_dir: Path):
    ckpt = read_checkpoint(reference_dir / "isegformer_tiny_5ch.pth")
    assert ckpt.class_name == "isegm.model.is_segformer_model.SegformerModel"
    assert ckpt.params["backbone_params"]["in_channels"] == 5
    loss = ckpt.params["decode_head_params"]["loss_decode"]
    assert isinstance(loss, ForeignObject)
    assert loss.foreign_name == "CrossEntropyLoss"
    assert "maps_transform.0.weight" in ckpt.state_dict


def test_truncated_file_raises_checkpoint_error(reference_dir: Path, tmp_path: Path):
    data = (reference_dir / "isegformer_tiny_5ch.pth").read_bytes()
    bad = tmp_path / "truncated.pth"
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated.pth"):
        read_checkpoint(bad)


def test_random_bytes_and_missing_file(tmp_path: Path):
    """Random bytes (some seeds once made the unpickler ask for gigabytes: MemoryError) and bytes that only
    start like a pickle are refused by the header check with the same message."""
    rng = np.random.default_rng(0)
    junk = tmp_path / "junk.pth"
    for trial in range(200):
        data = rng.integers(0, 256, 4096, dtype=np.uint8).tobytes()
        if trial % 2:
            data = b"\x80\x02" + data  # a pickle PROTO opcode, but no torch magic number
        junk.write_bytes(data)
        with pytest.raises(CheckpointError, match="junk.pth: not a readable PyTorch checkpoint"):
            read_checkpoint(junk)
    with pytest.raises(CheckpointError, match="no such checkpoint file"):
        read_checkpoint(tmp_path / "absent.pth")


def test_plain_state_dict_is_rejected_with_expected_format(tmp_path: Path):
    path = tmp_path / "weights_only.pth"
    torch.save({"conv.weight": torch.zeros(2, 2)}, path)
    with pytest.raises(CheckpointError, match="expected keys 'state_dict' and 'config'"):
        read_checkpoint(path)


def test_copy_keeps_working_outside_reference_dir(reference_dir: Path, tmp_path: Path):
    copy = tmp_path / "copy.pth"
    shutil.copy(reference_dir / "ritm_hrnet18s_ocr48.pth", copy)
    ckpt = read_checkpoint(copy)
    assert ckpt.params["width"] == 18 and ckpt.params["small"] is True
    assert all(isinstance(v, torch.Tensor) for v in ckpt.state_dict.values())


def test_unsupported_click_groups_error_names_the_file(reference_dir: Path, tmp_path: Path):
    source = reference_dir / "isegformer_tiny_5ch.pth"
    ckpt = torch.load(source, weights_only=False, pickle_module=_RestrictedPickleModule)
    ckpt["config"]["params"]["clicks_groups"] = {"type": "builtin", "value": [2, -1], "specified": True}
    path = tmp_path / "groups.pth"
    torch.save(ckpt, path, pickle_module=_OriginalPickleModule)
    with pytest.raises(CheckpointError, match=r"groups\.pth: .*clicks_groups"):
        load_checkpoint(path)
