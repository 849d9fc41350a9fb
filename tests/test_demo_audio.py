"""Demo audio: eSpeak NG speech (via the espeakng-loader package) and synthetic noises."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("espeakng_loader")
from mal.data import synthetic as demo_audio  # noqa: E402
from mal.data.synthetic import NOISE_NAMES, demo_noises, demo_speech, synthesize  # noqa: E402

TEXT = "The birch canoe slid on the smooth planks, near the quiet harbour."


def frame_db(x: np.ndarray, frame: int) -> np.ndarray:
    """RMS level of consecutive frames in dB."""
    frames = x[: len(x) // frame * frame].reshape(-1, frame).astype(np.float64)
    return 10 * np.log10(np.mean(frames**2, axis=1) + 1e-12)


@pytest.mark.parametrize("rate", [16000, 22050, 8000])
def test_synthesize_rate_and_duration(rate):
    x = synthesize(TEXT, sample_rate=rate)
    assert x.dtype == np.float32 and x.ndim == 1
    seconds = len(x) / rate
    assert 2.0 < seconds < 8.0, seconds  # ~12 words at 160 wpm
    assert np.isfinite(x).all() and np.abs(x).max() <= 1.0


def test_synthesized_speech_is_speech_like():
    rate = 16000
    x = synthesize(TEXT, sample_rate=rate)
    assert np.sqrt(np.mean(x**2)) > 0.01  # not silent
    levels = frame_db(x, rate // 50)  # 20 ms frames
    assert np.percentile(levels, 95) - np.percentile(levels, 10) > 20  # syllables and pauses
    power = np.abs(np.fft.rfft(x)) ** 2
    freqs = np.fft.rfftfreq(len(x), 1 / rate)
    assert power[freqs < 4000].sum() / power.sum() > 0.8
    assert power[(freqs > 80) & (freqs < 1000)].sum() / power.sum() > 0.3  # voicing / first formant


def test_voices_texts_and_parameters_differ():
    base = synthesize(TEXT)
    others = [
        synthesize(TEXT, voice="en-gb-x-rp+f4"),
        synthesize(TEXT, voice="en-us+m7"),
        synthesize(TEXT, pitch=80),
        synthesize(TEXT, rate_wpm=220),
        synthesize("Could you call me back before six o'clock tomorrow?"),
    ]
    for other in others:
        n = min(len(base), len(other))
        assert len(other) != len(base) or not np.allclose(base[:n], other[:n], atol=1e-3)
    assert len(synthesize(TEXT, rate_wpm=220)) < 0.85 * len(base)  # faster speech is shorter


def test_synthesize_is_deterministic_across_time_and_state():
    """Every voice variant the demo uses gives the same samples a clock second later, after
    another utterance (eSpeak keeps hidden state, and some variants seed noise from the clock)."""
    import time

    voices = [f"en-us+{v}" for v in demo_audio.VARIANTS]
    first = [synthesize(TEXT, voice=v, pitch=40) for v in voices]
    demo_audio._espeak.cache_clear()  # force second real syntheses
    synthesize(TEXT, voice="en-us+m3")  # eSpeak state from another utterance must not leak
    time.sleep(1.1)
    demo_audio._espeak.cache_clear()
    for voice, a in zip(voices, first):
        np.testing.assert_array_equal(a, synthesize(TEXT, voice=voice, pitch=40), err_msg=voice)


def test_synthesize_rejects_bad_input():
    with pytest.raises(ValueError, match="unknown eSpeak voice"):
        synthesize("hello", voice="xx-no-such-voice")
    with pytest.raises(ValueError):
        synthesize("   ")
    with pytest.raises(ValueError):
        synthesize("hello", rate_wpm=10)


def test_missing_espeak_is_a_one_line_runtime_error(monkeypatch):
    demo_audio._espeak_paths.cache_clear()
    monkeypatch.setitem(__import__("sys").modules, "espeakng_loader", None)  # import fails
    try:
        with pytest.raises(RuntimeError, match="espeakng-loader") as info:
            synthesize("not cached text for this test")
        assert "\n" not in str(info.value)
    finally:
        demo_audio._espeak_paths.cache_clear()


def test_unloadable_library_is_a_one_line_runtime_error(monkeypatch, tmp_path):
    bogus = tmp_path / "libespeak-ng.so"
    bogus.write_bytes(b"not a shared library")
    monkeypatch.setattr(demo_audio, "_espeak_paths", lambda: (str(bogus), str(tmp_path)))
    with pytest.raises(RuntimeError, match="cannot load") as info:
        demo_audio._espeak.__wrapped__("hello", "en-us", 160, 50)
    assert "\n" not in str(info.value)


def test_demo_speech_varied_and_reproducible():
    clips = demo_speech(6, sample_rate=16000, seed=3)
    assert len(clips) == 6
    assert all(c.dtype == np.float32 and len(c) > 16000 and np.isfinite(c).all() for c in clips)
    assert all(abs(np.abs(c).max() - 10 ** (-6 / 20)) < 1e-3 for c in clips)
    assert len({len(c) for c in clips}) == 6  # different sentences / voices / rates
    plan = demo_audio._speaker_plan(20, 3)
    assert len({voice for _, voice, _, _ in plan}) >= 8  # several "speakers"
    assert len({text for text, _, _, _ in plan}) == 20
    demo_audio._espeak.cache_clear()
    again = demo_speech(6, sample_rate=16000, seed=3)
    for a, b in zip(clips, again):
        np.testing.assert_array_equal(a, b)
    assert demo_audio._speaker_plan(6, 4) != demo_audio._speaker_plan(6, 3)  # the seed matters


def test_demo_noises_length_level_and_character():
    rate, seconds = 16000, 3.0
    noises = demo_noises(rate, seconds, seed=1)
    assert len(noises) == len(NOISE_NAMES)
    for name, x in zip(NOISE_NAMES, noises):
        assert x.dtype == np.float32 and x.shape == (int(rate * seconds),), name
        assert np.isfinite(x).all(), name
        assert abs(20 * np.log10(np.std(x)) + 25) < 0.5, name
    noise = dict(zip(NOISE_NAMES, noises))
    freqs = np.fft.rfftfreq(len(noise["pink"]), 1 / rate)

    def band_power(x, lo, hi):
        p = np.abs(np.fft.rfft(x)) ** 2
        return p[(freqs >= lo) & (freqs < hi)].mean()

    # pink: about -3 dB per octave; brown: about -6 dB per octave
    for name, slope in (("pink", 3.0), ("brown", 6.0)):
        drop = 10 * np.log10(band_power(noise[name], 250, 500) / band_power(noise[name], 2000, 4000))
        assert abs(drop - 3 * slope) < 3, (name, drop)
    hum = np.abs(np.fft.rfft(noise["hum"]))
    assert abs(freqs[np.argmax(hum)] - 50) < 2
    babble_levels = frame_db(noise["babble"], rate // 50)
    assert np.percentile(babble_levels, 95) - np.percentile(babble_levels, 5) < 25  # fuller than one talker
    np.testing.assert_array_equal(noise["fan"], demo_noises(rate, seconds, seed=1)[3])
    assert not np.array_equal(noise["pink"], demo_noises(rate, seconds, seed=2)[0])
    assert demo_noises(8000, 0.5, seed=0)[4].shape == (4000,)
