"""The model shipped inside the package (the paper_cpu recipe's best) is what `mal enhance`
uses without --model, and it improves real noisy speech."""

import numpy as np
import pytest

from mal.audio import list_audio, read_audio
from mal.cli import main
from mal.enhance import DEFAULT_MODEL, load_model
from mal.metrics.dnsmos import dnsmos
from mal.metrics.intrusive import wb_pesq


def test_default_model_is_shipped_and_small():
    assert DEFAULT_MODEL.is_file()
    assert DEFAULT_MODEL.stat().st_size < 10e6
    model = load_model(None)
    assert model.sample_rate == 16000


@pytest.mark.slow
def test_enhance_without_model_improves_vbd_test(shared_data, tmp_path):
    noisy_dir = shared_data / "vbd-test" / "noisy"
    out = tmp_path / "enhanced"
    assert main(["enhance", str(noisy_dir), "-o", str(out)]) == 0
    scores = {"noisy": ([], []), "enhanced": ([], [])}
    for path in list_audio(noisy_dir):
        clean, rate = read_audio(shared_data / "vbd-test" / "clean" / path.name)
        for name, folder in (("noisy", noisy_dir), ("enhanced", out)):
            x, _ = read_audio(folder / path.name)
            scores[name][0].append(wb_pesq(clean, x, rate))
            scores[name][1].append(dnsmos(x, rate)["DNSMOS-OVRL"])
    pesq_noisy, pesq_enh = np.mean(scores["noisy"][0]), np.mean(scores["enhanced"][0])
    ovrl_noisy, ovrl_enh = np.mean(scores["noisy"][1]), np.mean(scores["enhanced"][1])
    assert pesq_enh > pesq_noisy, (pesq_noisy, pesq_enh)
    assert ovrl_enh > ovrl_noisy, (ovrl_noisy, ovrl_enh)
