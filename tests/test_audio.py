import numpy as np
import pytest
import soundfile as sf

from mal.audio import (
    AudioError, active_speech_level, missing_frames, normalize_active_level, peak_normalize, read_audio, write_audio,
)


def _tone(rate=16000, seconds=1.0, amp=0.5):
    t = np.arange(int(rate * seconds)) / rate
    return (amp * np.sin(2 * np.pi * 440 * t)).astype(np.float32)


def test_read_resamples_and_mixes_to_mono(tmp_path):
    stereo = np.stack([_tone(44100), -_tone(44100) * 0.5], axis=1)
    sf.write(tmp_path / "a.flac", stereo, 44100)
    x, rate = read_audio(tmp_path / "a.flac", sample_rate=16000)
    assert rate == 16000 and x.dtype == np.float32 and x.ndim == 1
    assert abs(len(x) - 16000) <= 1
    assert np.max(np.abs(x)) == pytest.approx(0.125, rel=0.05)  # channel mean of 0.5 and -0.25


@pytest.mark.parametrize("content,problem", [(None, "not found"), (b"", "cannot read"), (b"RIFF....WAVEjunk", "cannot read")])
def test_bad_files_give_one_line_error_naming_the_file(tmp_path, content, problem):
    path = tmp_path / "bad.wav"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(AudioError) as err:
        read_audio(path)
    msg = str(err.value)
    assert str(path) in msg and problem in msg and "\n" not in msg


def test_empty_and_nonfinite_files_are_rejected(tmp_path):
    sf.write(tmp_path / "empty.wav", np.zeros(0, dtype=np.float32), 16000)
    with pytest.raises(AudioError, match="no samples"):
        read_audio(tmp_path / "empty.wav")
    x = _tone()
    x[100] = np.nan
    sf.write(tmp_path / "nan.wav", x, 16000, subtype="FLOAT")
    with pytest.raises(AudioError, match="NaN"):
        read_audio(tmp_path / "nan.wav")


@pytest.mark.parametrize("subtype,channels", [("PCM_16", 1), ("FLOAT", 2), ("PCM_24", 3)])
def test_missing_frames_of_a_wav_cut_short(tmp_path, subtype, channels):
    """The header's data size against the bytes there (soundfile reports only the frames present)."""
    x = np.repeat(_tone(seconds=0.5)[:, None], channels, axis=1)
    sf.write(tmp_path / "whole.wav", x, 16000, subtype=subtype)  # FLOAT adds a fact chunk, 3 channels EXTENSIBLE
    raw = (tmp_path / "whole.wav").read_bytes()
    width = {"PCM_16": 2, "FLOAT": 4, "PCM_24": 3}[subtype] * channels
    (tmp_path / "cut.wav").write_bytes(raw[: len(raw) - 3000 * width - 1])
    assert missing_frames(tmp_path / "whole.wav") == 0
    assert missing_frames(tmp_path / "cut.wav") == 3001 == 8000 - sf.info(str(tmp_path / "cut.wav")).frames
    sf.write(tmp_path / "whole.flac", x, 16000)
    assert missing_frames(tmp_path / "whole.flac") == 0


def test_write_is_atomic_and_leaves_no_temp_files(tmp_path):
    x = _tone()
    write_audio(tmp_path / "out" / "x.wav", x, 16000)
    y, rate = read_audio(tmp_path / "out" / "x.wav")
    np.testing.assert_allclose(x, y, atol=1e-6)
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["x.wav"]


def test_peak_normalize():
    y = peak_normalize(_tone(), -10.0)
    assert 20 * np.log10(np.max(np.abs(y))) == pytest.approx(-10.0, abs=1e-3)


def test_active_level_of_a_full_tone_and_of_speech_with_pauses():
    rate = 16000
    tone = _tone(rate, 2.0, amp=0.1)
    # a sine of amplitude a has power a^2/2: -23.0 dB for a = 0.1 (always active)
    assert active_speech_level(tone, rate) == pytest.approx(10 * np.log10(0.01 / 2), abs=0.3)
    # half the time silent: the long-term level drops by 3 dB, the active level only by the
    # 0.2 s hangover counted as active (10 log10(2.2 / 2) = 0.4 dB)
    gated = np.concatenate([tone, np.zeros_like(tone)])
    assert active_speech_level(gated, rate) == pytest.approx(active_speech_level(tone, rate) - 0.4, abs=0.3)
    y = normalize_active_level(gated, rate, -26.0)
    assert active_speech_level(y, rate) == pytest.approx(-26.0, abs=0.05)
    assert active_speech_level(np.zeros(1000), rate) == float("-inf")


def test_active_level_on_real_speech(shared_data):
    x, rate = read_audio(shared_data / "vbd-test" / "clean" / "p232_005.wav")
    level = active_speech_level(x, rate)
    long_term = 10 * np.log10(np.mean(x**2))
    assert level > long_term  # pauses are excluded
    assert -45 < level < -10


@pytest.mark.parametrize("rates", [(16000, 48000), (48000, 16000), (8000, 48000), (48000, 8000), (32000, 48000),
                                   (48000, 44100), (22050, 48000)])
def test_stream_resampler_equals_whole_signal_polyphase_for_any_chunks(rates):
    """Chunks of 1 sample to the whole signal give resample_poly's output with the same filter,
    every chunk of 10 ms brings its share of output (no bursts), and soxr HQ agrees to > 50 dB."""
    import math

    import soxr
    from scipy.signal import firwin, resample_poly

    from mal.audio.polyphase import StreamResampler, design

    a, b = rates
    # noise band-limited to 80% of the lower Nyquist frequency, where the filters' transitions begin
    x = np.random.default_rng(1).standard_normal(a // 4)
    x = np.convolve(x, firwin(255, 0.8 * min(a, b) / a), "same").astype(np.float32)
    rs = StreamResampler(a, b)
    whole = resample_poly(x.astype(np.float64), rs.up, rs.down, window=design(rs.up, rs.down))
    assert len(whole) == math.ceil(len(x) * b / a)
    for sizes in ([1], [7, 160, 1], [a // 100], [len(x)]):
        rs.reset()
        out, i, j = [], 0, 0
        while i < len(x):
            out.append(rs.resample_chunk(x[i : i + sizes[j % len(sizes)]]))
            i, j = i + sizes[j % len(sizes)], j + 1
        out.append(rs.resample_chunk(np.zeros(0, np.float32), last=True))
        y = np.concatenate(out)
        assert len(y) == len(whole) and np.abs(y - whole).max() < 1e-5, sizes
        if sizes == [a // 100]:  # after the first, every 10 ms chunk gives its 10 ms (+-1 sample)
            assert all(abs(len(o) - a // 100 * b / a) <= 1 for o in out[2:-2]), [len(o) for o in out]
    ref = soxr.resample(x, a, b, quality="HQ")
    assert 10 * np.log10(np.sum(ref**2) / np.sum((ref - y) ** 2)) > 50
    with pytest.raises(RuntimeError):
        rs.resample_chunk(x[:10])
