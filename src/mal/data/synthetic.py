"""Demo audio that needs no data and no download: synthetic English speech and noises.

The speech is eSpeak NG formant synthesis: intelligible but robotic and buzzy, with flat
prosody and no room acoustics, i.e. clearly *not* natural speech. It is good enough for
``make demo`` to train a small model briefly and show it removing noise; it is not a
substitute for a real corpus. "Speakers" are eSpeak accents (en-us, en, en-gb-x-rp, ...)
combined with its male/female variants (+m1..+m7, +f1, +f4) and varied pitch and rate.

Licence: eSpeak NG is GPL-3.0-or-later. mal does not ship, vendor or link it: the PyPI
package ``espeakng-loader`` carries the shared library and its voice data, and we load it
only at run time through ctypes.

Determinism: eSpeak keeps hidden static state between utterances (pitch-flutter index,
waveform phase) that not even ``espeak_Terminate`` resets, so one sentence synthesised
twice in one process comes out different. Each utterance is therefore synthesised by a
short-lived child Python (about 20 ms) starting from a pristine library: results are
reproducible across calls and processes, and synthesis is thread-safe without a lock.
"""

from __future__ import annotations

import functools
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from scipy.signal import butter, sosfilt

from mal.audio import peak_normalize, resample

SENTENCES = (
    "The birch canoe slid on the smooth planks.",
    "Glue the sheet to the dark blue background.",
    "It's easy to tell the depth of a well.",
    "These days a chicken leg is a rare dish.",
    "Rice is often served in round bowls.",
    "The juice of lemons makes fine punch.",
    "The box was thrown beside the parked truck.",
    "Four hours of steady work faced us.",
    "A large size in stockings is hard to sell.",
    "Could you call me back before six o'clock tomorrow?",
    "The meeting moved to room two hundred and twelve, on the third floor.",
    "Please turn the volume down, the baby is finally asleep.",
    "Why would anyone leave a bicycle out in the rain all night?",
    "Seventeen yellow taxis waited quietly outside the station.",
    "She sells fresh fish, shrimp and shellfish at the market.",
    "Our flight was delayed, so we watched the planes land and take off.",
    "Turn left at the bakery, then keep going until you see the bridge.",
    "Thank you very much, that was exactly what I needed.",
    "The weather report promised sunshine, but it snowed all afternoon.",
    "Measure twice and cut once, my grandfather always said.",
)
ACCENTS = ("en-us", "en", "en-gb-x-rp", "en-gb-scotland", "en-029", "en-us-nyc")
# Not +f2, +f3, +f5: their breath noise is seeded from the clock inside eSpeak, so the same
# utterance differs from one second to the next (tests/test_demo_audio.py checks the rest).
VARIANTS = ("m1", "m2", "m3", "m4", "m5", "m7", "f1", "f4")
NOISE_NAMES = ("pink", "brown", "hum", "fan", "babble")

# Runs in a fresh interpreter (python -I): stdlib only. Text on stdin; writes the sample
# rate (uint32 LE) then native int16 samples to stdout. Exit 2: unknown voice, 3: no eSpeak.
_CHILD = r"""
import ctypes, sys
lib_path, data_path, voice, rate, pitch = sys.argv[1:6]
def fail(code, message):
    sys.stderr.write(message + "\n")
    sys.exit(code)
try:
    lib = ctypes.CDLL(lib_path)
except OSError as err:
    fail(3, f"cannot load {lib_path}: {err}")
lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
hz = lib.espeak_Initialize(2, 0, data_path.encode(), 0x8000)  # SYNCHRONOUS, DONT_EXIT
if hz <= 0:
    fail(3, f"espeak_Initialize failed with data at {data_path}")
chunks = []
@ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)
def collect(wav, n, events):
    if wav and n > 0:
        chunks.append(ctypes.string_at(wav, 2 * n))
    return 0
lib.espeak_SetSynthCallback(collect)
if lib.espeak_SetVoiceByName(voice.encode()) != 0:
    fail(2, f"unknown eSpeak voice {voice!r}")
lib.espeak_SetParameter(1, int(rate), 0)  # espeakRATE, words per minute
lib.espeak_SetParameter(3, int(pitch), 0)  # espeakPITCH, 0..100
lib.espeak_Synth.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int,
                             ctypes.c_uint, ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p]
text = sys.stdin.buffer.read() + b"\0"
if lib.espeak_Synth(text, len(text), 0, 1, 0, 1, None, None) != 0:  # POS_CHARACTER, UTF8
    fail(1, "espeak_Synth failed")
sys.stdout.buffer.write(hz.to_bytes(4, "little") + b"".join(chunks))
"""


@functools.lru_cache(maxsize=1)
def _espeak_paths() -> tuple[str, str]:
    """(library, data folder) from the espeakng-loader package, or a one-line RuntimeError."""
    try:
        import espeakng_loader  # start-up: loaded only when speech is synthesised; a missing one is reported below
        return espeakng_loader.get_library_path(), espeakng_loader.get_data_path()
    except Exception as err:  # ImportError, or its RuntimeError for missing data
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise RuntimeError(f"demo speech needs eSpeak NG: pip install espeakng-loader ({reason})") from None


@functools.lru_cache(maxsize=128)
def _espeak(text: str, voice: str, rate_wpm: int, pitch: int) -> tuple[bytes, int]:
    """Raw int16 bytes and sample rate of one utterance, synthesised in a fresh child."""
    lib_path, data_path = _espeak_paths()
    args = [sys.executable, "-I", "-c", _CHILD, lib_path, data_path, voice, str(rate_wpm), str(pitch)]
    proc = subprocess.run(args, input=text.encode("utf-8"), capture_output=True, timeout=120)
    lines = proc.stderr.decode(errors="replace").strip().splitlines()
    message = lines[-1] if lines else f"exit code {proc.returncode}"
    if proc.returncode == 2:
        raise ValueError(message)
    if proc.returncode != 0 or len(proc.stdout) < 4:
        raise RuntimeError(f"eSpeak NG synthesis failed: {message}")
    return proc.stdout[4:], int.from_bytes(proc.stdout[:4], "little")


def synthesize(
    text: str, voice: str = "en-us", rate_wpm: int = 160, pitch: int = 50, sample_rate: int = 16000
) -> np.ndarray:
    """Speak ``text`` with eSpeak NG; float32 mono at ``sample_rate``, at eSpeak's own level."""
    if not text.strip():
        raise ValueError("synthesize: text is empty")
    if not 80 <= rate_wpm <= 450 or not 0 <= pitch <= 100:
        raise ValueError(f"synthesize: rate_wpm must be 80..450 and pitch 0..100, got {rate_wpm}, {pitch}")
    raw, rate = _espeak(text, voice, int(rate_wpm), int(pitch))
    x = np.frombuffer(raw, dtype=np.int16).astype(np.float32) / 32768.0
    return np.clip(resample(x, rate, sample_rate), -1.0, 1.0).astype(np.float32)


def _speaker_plan(n: int, seed: int) -> list[tuple[str, str, int, int]]:
    """(sentence, voice, rate, pitch) for ``n`` utterances, drawn reproducibly from ``seed``."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(SENTENCES))
    plan = []
    for i in range(n):
        voice = f"{ACCENTS[rng.integers(len(ACCENTS))]}+{VARIANTS[rng.integers(len(VARIANTS))]}"
        rate, pitch = int(rng.integers(130, 191)), int(rng.integers(30, 71))
        plan.append((SENTENCES[order[i % len(order)]], voice, rate, pitch))
    return plan


def _synthesize_many(plan: list[tuple[str, str, int, int]], sample_rate: int) -> list[np.ndarray]:
    """Synthesise a plan, a few children at a time."""
    with ThreadPoolExecutor(max_workers=4) as pool:
        return list(pool.map(lambda p: synthesize(*p, sample_rate=sample_rate), plan))


def demo_speech(n_utterances: int, sample_rate: int = 16000, seed: int = 0) -> list[np.ndarray]:
    """``n_utterances`` clean utterances (varied sentences, accents, voices, pitch, rate), peak -6 dBFS."""
    clips = _synthesize_many(_speaker_plan(n_utterances, seed), sample_rate)
    return [peak_normalize(x, -6.0) for x in clips]


def _coloured(rng: np.random.Generator, n: int, exponent: float, sample_rate: int) -> np.ndarray:
    """Gaussian noise with power spectrum 1/f**exponent above 20 Hz (flat below)."""
    spectrum = np.fft.rfft(rng.standard_normal(n))
    f = np.maximum(np.fft.rfftfreq(n, 1.0 / sample_rate), 20.0)
    return np.fft.irfft(spectrum / f ** (exponent / 2), n)


def _babble(n: int, sample_rate: int, seed: int, talkers: int = 6) -> np.ndarray:
    """Several eSpeak talkers at once, each looping shifted sentences to fill ``n`` samples."""
    rng = np.random.default_rng(seed)
    per_talker = max(1, int(np.ceil(n / (2.5 * sample_rate))))
    plan = _speaker_plan(talkers * per_talker, seed + 1)
    clips = _synthesize_many(plan, sample_rate)
    mix = np.zeros(n)
    for t in range(talkers):
        stream = np.concatenate([peak_normalize(c, -6.0) for c in clips[t * per_talker:(t + 1) * per_talker]])
        stream = np.resize(stream, n)  # repeats when shorter than n
        mix += np.roll(stream, int(rng.integers(n))) * rng.uniform(0.6, 1.0)
    return mix


def demo_noises(sample_rate: int = 16000, seconds: float = 5.0, seed: int = 0) -> list[np.ndarray]:
    """Synthetic noises in ``NOISE_NAMES`` order (pink, brown, hum, fan, babble) at -25 dBFS RMS."""
    n = int(round(seconds * sample_rate))
    if n <= 0:
        raise ValueError(f"demo_noises: seconds must be positive, got {seconds}")
    rng = np.random.default_rng(seed)
    t = np.arange(n) / sample_rate
    pink = _coloured(rng, n, 1.0, sample_rate)
    brown = _coloured(rng, n, 2.0, sample_rate)
    mains = 50.0 * (1 + 0.002 * rng.standard_normal())
    hum = sum(a * np.sin(2 * np.pi * k * mains * t + rng.uniform(0, 2 * np.pi))
              for k, a in ((1, 1.0), (2, 0.5), (3, 0.6), (4, 0.2), (5, 0.3), (7, 0.15), (9, 0.08)))
    hum = hum * (1 + 0.1 * np.sin(2 * np.pi * 0.3 * t)) + 0.02 * rng.standard_normal(n)
    band = butter(4, [150, min(2500, 0.45 * sample_rate)], "bandpass", fs=sample_rate, output="sos")
    blade = rng.uniform(80, 140)  # blade-pass tone of the fan
    fan = sosfilt(band, rng.standard_normal(n)) * (1 + 0.15 * np.sin(2 * np.pi * blade / 7 * t))
    fan = fan + 0.3 * np.std(fan) * np.sin(2 * np.pi * blade * t)
    babble = _babble(n, sample_rate, seed)
    target = 10 ** (-25 / 20)
    noises = (pink, brown, hum, fan, babble)
    return [(x * target / max(float(np.std(x)), 1e-12)).astype(np.float32) for x in noises]
