"""NISQA v2 (Mittag et al. 2021) through the official code of the ``nisqa`` package.

Install it without its pins (they would replace torch): ``pip install --no-deps nisqa``,
plus what it imports: ``librosa pandas``. Weights (``nisqa.tar``, CC BY-NC-SA 4.0, never
bundled): ``--nisqa-weights``, ``$MAL_NISQA_WEIGHTS`` or a known place, as
:func:`mal.util.assets.find_nisqa_weights` looks. Each signal is normalised to -26 dBov P.56
active speech level (as in the paper), written to a temporary float WAV and scored by the
package's own ``nisqaModel.predict`` path, so the numbers equal its command line's on that
normalised file.
"""

from __future__ import annotations

import contextlib
import io
import os
import tempfile
import warnings
from pathlib import Path

import numpy as np

from mal.audio import normalize_active_level, write_audio
from mal.util.assets import find_nisqa_weights, nisqa_missing_reason

NISQA_LEVEL_DB = -26.0
NISQA_METRICS = ("NISQA-MOS", "NISQA-NOI", "NISQA-DIS", "NISQA-COL", "NISQA-LOUD")
_COLUMNS = {"mos_pred": "NISQA-MOS", "noi_pred": "NISQA-NOI", "dis_pred": "NISQA-DIS",
            "col_pred": "NISQA-COL", "loud_pred": "NISQA-LOUD"}


def nisqa_unavailable(weights: Path | None, import_check: bool = True) -> str | None:
    """Why NISQA cannot run here, or None when it can (``import_check``: also import its code)."""
    if weights is None:
        return nisqa_missing_reason()
    if not Path(weights).is_file():
        return f"NISQA weights not found at {weights}"
    if not import_check:
        return None
    try:
        import nisqa.NISQA_model  # noqa: F401
    except Exception as err:
        return f"nisqa not importable ({type(err).__name__}: {err}); pip install --no-deps nisqa && pip install librosa pandas"
    return None


class NisqaScorer:
    """Loads the NISQA model once; ``score(samples, rate)`` returns the five NISQA values.

    ``weights``: ``nisqa.tar``; None looks where :func:`mal.util.assets.find_nisqa_weights` does.
    """

    def __init__(self, weights: str | os.PathLike | None = None, device: str = "cpu", normalize: bool = True) -> None:
        found = find_nisqa_weights(weights)
        if reason := nisqa_unavailable(found, import_check=False):
            raise FileNotFoundError(reason)
        weights = found
        from nisqa.NISQA_model import nisqaModel  # start-up: the NISQA code (torch, pandas, librosa) loads only when scoring

        self.normalize = normalize
        self._tmp = tempfile.TemporaryDirectory(prefix="mal-nisqa-")
        self._wav = Path(self._tmp.name) / "deg.wav"
        args = {"mode": "predict_file", "pretrained_model": str(Path(weights).resolve()), "deg": str(self._wav),
                "output_dir": None, "ms_channel": None, "tr_bs_val": 1, "tr_num_workers": 0,
                "tr_parallel": False, "tr_device": device}
        with contextlib.redirect_stdout(io.StringIO()):  # the package prints its config
            self._model = nisqaModel(args)
        self._base_segments = int(self._model.args["ms_max_segments"])

    def score(self, samples: np.ndarray, sample_rate: int) -> dict[str, float]:
        """NISQA overall MOS and the four dimensions of one mono signal."""
        x = np.asarray(samples, dtype=np.float32)
        if self.normalize:
            x = normalize_active_level(x, sample_rate, NISQA_LEVEL_DB)
        write_audio(self._wav, x, sample_rate)
        model = self._model
        # The model pads to ms_max_segments windows (about 52 s); allow longer files.
        hop_s, seg_hop = model.args["ms_hop_length"], model.args["ms_seg_hop_length"]
        windows = int(np.ceil((len(x) / sample_rate / hop_s + 1) / seg_hop)) + 1
        model.args["ms_max_segments"] = max(self._base_segments, windows)
        with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # librosa: empty mel filters above 8 kHz
            model._loadDatasets()  # rebuilds the dataset for args["deg"], as predict_file does
            frame = model.predict()
        row = frame.iloc[0]
        return {name: float(row[column]) for column, name in _COLUMNS.items()}

    def close(self) -> None:
        """Remove the temporary folder."""
        self._tmp.cleanup()
