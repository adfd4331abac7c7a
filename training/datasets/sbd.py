"""SBD (Semantic Boundaries Dataset) evaluation split: ``img/<id>.jpg`` + ``inst/<id>.mat``.

The instance map is the ``GTinst.Segmentation`` field of the MATLAB file (0 = background, 1..n
instances); every instance of every image listed in ``<split>.txt`` is one object, as in the
original ``SBDEvaluationDataset``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import scipy.io

from training.datasets.base import EvalDataset, Sample


class SBDDataset(EvalDataset):
    """SBD instances of the ``val`` (default) or ``train`` split."""

    LAYOUT = "<root>/val.txt (one id a line) + <root>/img/<id>.jpg + <root>/inst/<id>.mat (GTinst)"

    def __init__(self, root: str | Path, split: str = "val") -> None:
        self.split = split
        self.LAYOUT = self.LAYOUT.replace("val.txt", f"{split}.txt")
        super().__init__(root)

    def _names(self) -> list[str]:
        self._images_dir = self.require_dir(self.root / "img")
        self._inst_dir = self.require_dir(self.root / "inst")
        list_path = self.root / f"{self.split}.txt"
        return self.read_id_list(list_path)

    def _load(self, name: str) -> Sample:
        image = self.read_rgb(self._images_dir / f"{name}.jpg")
        mat_path = self._inst_dir / f"{name}.mat"
        if not mat_path.is_file():
            self.fail(mat_path, "missing instance file")
        try:
            gt_inst = scipy.io.loadmat(str(mat_path))["GTinst"]
            names = gt_inst.dtype.names or ()
            field = "Segmentation" if "Segmentation" in names else names[0]
            instances = np.asarray(gt_inst[field][0, 0], dtype=np.int32)
        except (KeyError, IndexError, ValueError, TypeError, OSError) as error:
            self.fail(mat_path, f"not an SBD instance file ({error})")
        self.check_shapes(mat_path, image, instances)
        return Sample(name=name, image=image, instances=instances)
