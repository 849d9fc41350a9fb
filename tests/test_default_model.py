"""The package's default model (shipped by recipes/paper_pretrained: a public DeepFilterNet or a
fine-tune of one) is what `mal enhance` uses without --model, and on VoiceBank-DEMAND it is at
least as good as the public DeepFilterNet3 through its own C runtime (issue 13)."""

import numpy as np
import pytest

from mal.audio import list_audio, read_audio
from mal.cli import main
from mal.models.store import DEFAULT_MODEL, DEFAULT_POINTER, default_public_name, load_model
from mal.evaluation.metrics.dnsmos import dnsmos
from mal.evaluation.metrics.intrusive import wb_pesq
from mal.models.public import LICENCE, PUBLIC_MODELS


def test_default_model_is_shipped_with_its_licence():
    assert DEFAULT_MODEL.is_file() != DEFAULT_POINTER.is_file(), "exactly one of default.ckpt / default.yaml is shipped"
    model = load_model(None)
    assert model.sample_rate == 48000  # a DeepFilterNet: full band
    if DEFAULT_POINTER.is_file():  # the unchanged public weights, not shipped twice
        assert default_public_name() in PUBLIC_MODELS
        public = load_model(default_public_name()).state_dict()
        assert all(np.array_equal(v.numpy(), public[k].numpy()) for k, v in model.state_dict().items())
    else:  # fine-tuned weights: small enough for the wheel, and they carry the base model's licence
        assert DEFAULT_MODEL.stat().st_size < 20e6
        assert model.metadata["licence"] == LICENCE and model.metadata["model"]


@pytest.mark.slow
def test_enhance_without_model_is_at_least_the_public_dfn3_runtime_on_vbd_test(shared_data, vbd_dfn3_runtime, tmp_path):
    noisy_dir = shared_data / "vbd-test" / "noisy"
    out = tmp_path / "enhanced"
    assert main(["enhance", str(noisy_dir), "-o", str(out), "--quiet"]) == 0
    scores = {name: {"WB-PESQ": [], "DNSMOS-OVRL": []} for name in ("noisy", "default", "dfn3-runtime")}
    for path in list_audio(noisy_dir):
        clean, rate = read_audio(shared_data / "vbd-test" / "clean" / path.name)
        for name, folder in (("noisy", noisy_dir), ("default", out), ("dfn3-runtime", vbd_dfn3_runtime)):
            x, x_rate = read_audio(folder / path.name)
            assert x_rate == rate and len(x) == len(clean), (name, path.name)
            scores[name]["WB-PESQ"].append(wb_pesq(clean, x, rate))
            scores[name]["DNSMOS-OVRL"].append(dnsmos(x, rate)["DNSMOS-OVRL"])
    means = {name: {m: float(np.mean(v)) for m, v in per.items()} for name, per in scores.items()}
    assert len(scores["default"]["WB-PESQ"]) == 64
    for metric in ("WB-PESQ", "DNSMOS-OVRL"):
        assert means["default"][metric] >= means["dfn3-runtime"][metric] - 0.02, means
        assert means["default"][metric] > means["noisy"][metric] + 0.3, means
