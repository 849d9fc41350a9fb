"""Intrusive metrics: a clean reference and a processed signal of the same length.

PESQ comes from ``pesq`` (ITU-T P.862.2 wide-band, MOS-LQO), STOI/ESTOI from ``pystoi``,
STFTs from scipy, DTW (for MCD) from ``librosa``. The composite measures
(Hu & Loizou 2008) have no maintained package, so their parts (LLR, WSS, segmental SNR) are
written here from the paper and Loizou's description ("Speech Enhancement: Theory and
Practice", 2nd ed., 2013, sec. 11.1): 30-ms Hann frames, 75 % overlap, the 95 % of frames
with the lowest distortion for LLR and WSS, segmental SNR clipped to [-10, 35] dB.

Every function takes mono float arrays ``reference`` and ``processed`` at ``sample_rate``.
What depends on the reference alone (its LPC and LLR denominator, its WSS band energies and
weights, its mel-cepstrum) can be computed once with ``composite_reference`` /
``mel_cepstrum`` and passed in, so scoring several systems against the same references
gives the same numbers without redoing the reference side.
"""

from __future__ import annotations

import importlib
import warnings
from dataclasses import dataclass

import numpy as np
import scipy.linalg
import scipy.signal

from mal.audio import resample

PESQ_RATE = 16000

# Critical bands of the weighted-spectral-slope measure (Klatt 1982), as tabulated by Loizou:
# centre frequencies and bandwidths in Hz.
_WSS_CENTRES = np.array([
    50.0, 120.0, 190.0, 260.0, 330.0, 400.0, 470.0, 540.0, 617.372, 703.378, 798.717,
    904.128, 1020.38, 1148.30, 1288.72, 1442.54, 1610.70, 1794.16, 1993.93, 2211.08,
    2446.71, 2701.97, 2978.04, 3276.17, 3597.63,
])
_WSS_BANDWIDTHS = np.array([
    70.0, 70.0, 70.0, 70.0, 70.0, 70.0, 70.0, 77.3724, 86.0056, 95.3398, 105.411, 116.256,
    127.914, 140.423, 153.823, 168.154, 183.457, 199.776, 217.153, 235.631, 255.255,
    276.072, 298.126, 321.465, 346.136,
])


def wb_pesq(reference: np.ndarray, processed: np.ndarray, sample_rate: int) -> float:
    """WB-PESQ (MOS-LQO, P.862.2) at 16 kHz; NaN when PESQ finds no utterance."""
    from pesq import NoUtterancesError, pesq  # start-up: loaded only when PESQ is scored

    ref = resample(reference, sample_rate, PESQ_RATE)
    deg = resample(processed, sample_rate, PESQ_RATE)
    try:
        return float(pesq(PESQ_RATE, ref, deg, "wb"))
    except NoUtterancesError:
        return float("nan")


@dataclass(frozen=True)
class StoiSegments:
    """Third-octave envelope segments (J, 15, 30) of reference and processed (None: too few frames)."""

    x: np.ndarray | None
    y: np.ndarray | None


def _pystoi():
    """pystoi's ``stoi`` module (its constants: FS, N_FRAME, NFFT, OBM, N, BETA, DYN_RANGE)."""
    return importlib.import_module("pystoi.stoi")  # the package's ``stoi`` attribute is the function


def stoi(reference: np.ndarray, processed: np.ndarray, sample_rate: int, extended: bool = False,
         segments: StoiSegments | None = None) -> float:
    """STOI (Taal et al. 2011), or ESTOI (Jensen & Taal 2016) when ``extended``: pystoi's numbers.

    pystoi's ``stoi`` step for step, with the preparation both measures share (resampling to
    10 kHz, silent-frame removal, STFT, third-octave envelopes: ``stoi_segments``) made once
    when ``segments`` is passed, and two of its per-frame Python loops (the STFT's frames,
    ESTOI's diagonal-matrix products) written as array operations with the same values.
    ESTOI draws pystoi's tiny (1e-16) dithering noise from numpy's global generator, as
    pystoi does, so it moves in the last bits from call to call.
    """
    segments = stoi_segments(reference, processed, sample_rate) if segments is None else segments
    if segments.x is None:
        warnings.warn("Not enough STFT frames to compute intermediate intelligibility measure after removing "
                      "silent frames. Returning 1e-5. Please check you wav files", RuntimeWarning)
        return 1e-5
    from pystoi import utils  # start-up: loaded only when STOI is scored

    S = _pystoi()
    n = segments.x.shape[-1]
    if extended:
        x_n, y_n = _row_col_normalize(segments.x), _row_col_normalize(segments.y)
        return float(np.sum(x_n * y_n / n) / x_n.shape[0])
    x_segments, y_segments = segments.x, segments.y
    normalization = (np.linalg.norm(x_segments, axis=2, keepdims=True)
                     / (np.linalg.norm(y_segments, axis=2, keepdims=True) + utils.EPS))
    y_primes = np.minimum(y_segments * normalization, x_segments * (1 + 10 ** (-S.BETA / 20)))
    y_primes = y_primes - np.mean(y_primes, axis=2, keepdims=True)
    x_segments = x_segments - np.mean(x_segments, axis=2, keepdims=True)
    y_primes /= np.linalg.norm(y_primes, axis=2, keepdims=True) + utils.EPS
    x_segments /= np.linalg.norm(x_segments, axis=2, keepdims=True) + utils.EPS
    return float(np.sum(y_primes * x_segments) / (x_segments.shape[0] * x_segments.shape[1]))


def stoi_segments(reference: np.ndarray, processed: np.ndarray, sample_rate: int) -> StoiSegments:
    """What STOI and ESTOI both compute from a pair, as pystoi's ``stoi`` computes it."""
    from pystoi import utils  # start-up: loaded only when STOI is scored

    S = _pystoi()

    if reference.shape != processed.shape:
        raise ValueError(f"x and y should have the same length, found {reference.shape} and {processed.shape}")
    x, y = reference, processed
    if sample_rate != S.FS:
        x, y = utils.resample_oct(x, S.FS, sample_rate), utils.resample_oct(y, S.FS, sample_rate)
    x, y = utils.remove_silent_frames(x, y, S.DYN_RANGE, S.N_FRAME, int(S.N_FRAME / 2))
    x_spec, y_spec = _stoi_stft(x, S.N_FRAME, S.NFFT).transpose(), _stoi_stft(y, S.N_FRAME, S.NFFT).transpose()
    if x_spec.shape[-1] < S.N:
        return StoiSegments(None, None)
    x_tob = np.sqrt(np.matmul(S.OBM, np.square(np.abs(x_spec))))
    y_tob = np.sqrt(np.matmul(S.OBM, np.square(np.abs(y_spec))))
    ends = range(S.N, x_tob.shape[1] + 1)
    return StoiSegments(np.array([x_tob[:, m - S.N : m] for m in ends]), np.array([y_tob[:, m - S.N : m] for m in ends]))


def _stoi_stft(x: np.ndarray, win_size: int, fft_size: int) -> np.ndarray:
    """pystoi.utils.stft(x, win_size, fft_size, overlap=2): its frames in one rfft call (the same values)."""
    hop = int(win_size / 2)
    window = np.hanning(win_size + 2)[1:-1]
    starts = range(0, len(x) - win_size, hop)
    if len(starts) == 0:
        return np.zeros((0, fft_size // 2 + 1), dtype=np.complex128)
    frames = np.lib.stride_tricks.sliding_window_view(x, win_size)[: starts[-1] + 1 : hop]
    return np.fft.rfft(window * frames, n=fft_size, axis=-1)


def _row_col_normalize(x: np.ndarray) -> np.ndarray:
    """pystoi.utils.row_col_normalize with its per-segment ``np.diag`` products as broadcasts.

    Multiplying by a diagonal matrix adds exact zeros to each product, so scaling the rows
    (columns) by the diagonal gives the same values; the dithering noise is drawn in the
    same order from the same generator.
    """
    from pystoi import utils  # start-up: loaded only when STOI is scored

    normed = x + utils.EPS * np.random.standard_normal(x.shape)
    normed -= np.mean(normed, axis=-1, keepdims=True)
    normed = (1.0 / np.sqrt(utils.vect_two_norm(normed))) * normed
    normed += +utils.EPS * np.random.standard_normal(normed.shape)
    normed -= np.mean(normed, axis=1, keepdims=True)
    return normed * (1.0 / np.sqrt(utils.vect_two_norm(normed, axis=1)))


def si_sdr(reference: np.ndarray, processed: np.ndarray, block: int = 1 << 18) -> float:
    """Scale-invariant SDR in dB (Le Roux et al. 2019), both signals made zero-mean.

    Three lines of numpy rather than torchmetrics' function (the reference the tests
    check against), whose import costs seconds in every worker process. Sums run over
    float64 blocks so an hour-long pair needs no full-length float64 copies.
    """
    ref_mean, deg_mean = np.mean(reference), np.mean(processed)

    def blocks():  # zero-mean float64 (reference, processed) blocks
        for i in range(0, len(reference), block):
            yield (np.asarray(reference[i : i + block], dtype=np.float64) - ref_mean,
                   np.asarray(processed[i : i + block], dtype=np.float64) - deg_mean)

    eps = np.finfo(np.float64).eps
    dot_dr, dot_rr = 0.0, 0.0
    for ref, deg in blocks():
        dot_dr += float(np.dot(deg, ref))
        dot_rr += float(np.dot(ref, ref))
    scale = (dot_dr + eps) / (dot_rr + eps)
    noise = sum(float(np.sum((deg - scale * ref) ** 2)) for ref, deg in blocks())
    return float(10.0 * np.log10((scale * scale * dot_rr + eps) / (noise + eps)))


def lsd(reference: np.ndarray, processed: np.ndarray, sample_rate: int, eps: float = 1e-8) -> float:
    """Log-spectral distance as in the URGENT challenge (the paper's LSD).

    The processed signal is first scaled by the least-squares gain onto the reference, so
    LSD is level-invariant; 32-ms Hann frames, 16-ms hop, centred (zero-padded) as
    librosa's STFT, natural log of power, RMS over frequency, mean over frames.
    """
    ref = np.asarray(reference, dtype=np.float64)
    deg = np.asarray(processed, dtype=np.float64)
    deg = deg * (np.dot(ref, deg) / (np.dot(deg, deg) + eps))
    n_fft, hop = int(0.032 * sample_rate), int(0.016 * sample_rate)

    def magnitude(x: np.ndarray) -> np.ndarray:
        _, _, spec = scipy.signal.stft(x, window="hann", nperseg=n_fft, noverlap=n_fft - hop,
                                       boundary="zeros", padded=False)
        return np.abs(spec) * np.sum(scipy.signal.get_window("hann", n_fft))  # undo scipy's 1/sum(w)

    ref_mag, deg_mag = magnitude(ref), magnitude(deg)
    log_ratio = np.log(ref_mag**2 / (deg_mag + eps) ** 2 + eps)
    return float(np.mean(np.sqrt(np.mean(log_ratio**2, axis=0))))


def mel_cepstrum(x: np.ndarray, sample_rate: int, order: int, alpha: float, n_fft: int = 1024, hop: int = 256) -> np.ndarray:
    """Mel-cepstra (frames, order + 1) of Hamming frames: the cepstrum on a warped axis.

    Written here because pysptk (SPTK's ``mcep``) ships no wheels. Instead of SPTK's
    iterative estimate, the log amplitude spectrum is resampled on the all-pass (``alpha``)
    warped frequency axis and transformed back: the frequency-warped cepstrum, which
    matches SPTK's ``mcep`` closely for smooth envelopes.
    """
    frames = np.lib.stride_tricks.sliding_window_view(np.asarray(x, dtype=np.float64), n_fft)[::hop]
    spectrum = np.abs(np.fft.rfft(frames * np.hamming(n_fft), axis=-1)) ** 2
    log_amplitude = 0.5 * np.log(spectrum + 1e-6)
    omega = np.linspace(0.0, np.pi, spectrum.shape[-1])
    # The inverse of the all-pass warp with alpha is the warp with -alpha.
    unwarped = omega - 2.0 * np.arctan(alpha * np.sin(omega) / (1.0 + alpha * np.cos(omega)))
    warped_log = np.stack([np.interp(unwarped, omega, row) for row in log_amplitude])
    cepstrum = np.fft.irfft(warped_log, axis=-1)[:, : order + 1]
    cepstrum[:, 1:] *= 2.0  # one-sided (minimum-phase) coefficients, as SPTK's
    return cepstrum


def mcd_reference(reference: np.ndarray, sample_rate: int) -> np.ndarray:
    """The reference side of ``mcd``: its mel-cepstra at the rate's order and alpha."""
    order, alpha = _mcep_params(sample_rate)
    return mel_cepstrum(reference, sample_rate, order, alpha)


def mcd(reference: np.ndarray, processed: np.ndarray, sample_rate: int, reference_cepstrum: np.ndarray | None = None) -> float:
    """Mel-cepstral distortion in dB, DTW-aligned, as in the URGENT challenge (ESPnet).

    1024-point Hamming frames, hop 256, order/alpha by rate (23/0.42 at 16 kHz), c0
    included. Level-dependent through c0. ``reference_cepstrum``: ``mcd_reference`` of
    this reference, to reuse it.
    """
    import librosa  # start-up: a heavy import, only when MCD is scored

    order, alpha = _mcep_params(sample_rate)
    ref = mcd_reference(reference, sample_rate) if reference_cepstrum is None else reference_cepstrum
    deg = mel_cepstrum(processed, sample_rate, order, alpha)
    _, path = librosa.sequence.dtw(X=deg.T, Y=ref.T, metric="euclidean")
    path = path[::-1]
    diff2 = np.sum((deg[path[:, 0]] - ref[path[:, 1]]) ** 2, axis=1)
    return float(np.mean(10.0 / np.log(10.0) * np.sqrt(2.0 * diff2)))


def _mcep_params(sample_rate: int) -> tuple[int, float]:
    table = {8000: (13, 0.41), 16000: (23, 0.42), 22050: (34, 0.45), 24000: (34, 0.46),
             32000: (36, 0.49), 44100: (39, 0.53), 48000: (39, 0.55)}
    if sample_rate not in table:
        raise ValueError(f"MCD: no mel-cepstrum setting for {sample_rate} Hz")
    return table[sample_rate]


def _frames(x: np.ndarray, sample_rate: int) -> np.ndarray:
    """30-ms Hann frames with a quarter-frame hop, as in Loizou's composite measures."""
    length = round(0.030 * sample_rate)
    hop = length // 4
    window = 0.5 * (1.0 - np.cos(2.0 * np.pi * np.arange(1, length + 1) / (length + 1)))
    n_frames = (len(x) - length) // hop
    if n_frames < 1:
        raise ValueError("signal shorter than one 30-ms frame")
    frames = np.lib.stride_tricks.sliding_window_view(x, length)[::hop][:n_frames]
    return frames * window


def segmental_snr(reference: np.ndarray, processed: np.ndarray, sample_rate: int) -> float:
    """Segmental SNR in dB, each frame clipped to [-10, 35] dB."""
    eps = np.finfo(np.float64).eps
    ref = _frames(np.asarray(reference, dtype=np.float64), sample_rate)
    deg = _frames(np.asarray(processed, dtype=np.float64), sample_rate)
    signal = np.sum(ref**2, axis=1)
    noise = np.sum((ref - deg) ** 2, axis=1)
    snr = 10.0 * np.log10(signal / (noise + eps) + eps)
    return float(np.mean(np.clip(snr, -10.0, 35.0)))


try:  # the Levinson recursion behind scipy.linalg.solve_toeplitz, without its per-call checks
    from scipy.linalg._solve_toeplitz import levinson as _levinson
except ImportError:  # a scipy that moved it: the public function (the same numbers, slower)
    _levinson = None


def _solve_symmetric_toeplitz(column: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``scipy.linalg.solve_toeplitz(column, b)`` for a real symmetric matrix, the same numbers.

    solve_toeplitz validates and converts its arguments on every call (about 85 % of its
    time on a 16x16 system) before calling its Cython Levinson recursion with
    ``(column[-1:0:-1], column)`` concatenated; the composite measures make one such call per
    30-ms frame, so it is called directly here, on the same arguments.
    """
    if _levinson is None:
        return scipy.linalg.solve_toeplitz(column, b, check_finite=False)
    return _levinson(np.concatenate((column[-1:0:-1], column)), np.ascontiguousarray(b))[0]


def _toeplitz_index(n: int) -> np.ndarray:
    """Indices that make ``r[index]`` the symmetric Toeplitz matrix of ``r`` (``scipy.linalg.toeplitz(r)``)."""
    i = np.arange(n)
    return np.abs(i[:, None] - i[None, :])


def _quadratic_forms(lags: np.ndarray, poly: np.ndarray) -> np.ndarray:
    """``poly[f] @ toeplitz(lags[f]) @ poly[f]`` per frame, as that expression computes it.

    One (n, n) C-ordered Toeplitz matrix per frame, as scipy.linalg.toeplitz returns (the
    same values, made by indexing instead of its per-call validation): a stacked (F, n, n)
    product would round differently (BLAS, 1e-16 relative, measured).
    """
    index = _toeplitz_index(lags.shape[1])
    out = np.empty(len(lags))
    for i, r in enumerate(lags):
        out[i] = poly[i] @ r[index] @ poly[i]
    return out


def _lpc(frames: np.ndarray, order: int) -> tuple[np.ndarray, np.ndarray]:
    """Autocorrelation lags (F, order+1) and LPC polynomials [1, -a] (F, order+1) per frame."""
    n = frames.shape[1]
    lags = np.stack([np.sum(frames[:, : n - k] * frames[:, k:], axis=1) for k in range(order + 1)], axis=1)
    poly = np.zeros_like(lags)
    poly[:, 0] = 1.0
    for i, r in enumerate(lags):
        if r[0] <= 0.0:
            continue  # silent frame: flat predictor
        try:  # finite by construction (frames of finite audio)
            poly[i, 1:] = -_solve_symmetric_toeplitz(r[:-1], r[1:])
        except np.linalg.LinAlgError:
            continue
    return lags, poly


def _llr_order(sample_rate: int) -> int:
    return 10 if sample_rate < 10000 else 16


def _llr_reference(reference: np.ndarray, sample_rate: int) -> tuple[np.ndarray, np.ndarray]:
    """The reference side of ``llr``: autocorrelation lags and ``a_ref' R a_ref`` per frame."""
    ref_lags, ref_poly = _lpc(_frames(np.asarray(reference, dtype=np.float64), sample_rate), _llr_order(sample_rate))
    return ref_lags, _quadratic_forms(ref_lags, ref_poly)


def llr(reference: np.ndarray, processed: np.ndarray, sample_rate: int, keep: float = 0.95,
        reference_side: tuple[np.ndarray, np.ndarray] | None = None) -> float:
    """Log-likelihood ratio (Itakura): mean over the ``keep`` fraction of best frames."""
    ref_lags, denominator = _llr_reference(reference, sample_rate) if reference_side is None else reference_side
    _, deg_poly = _lpc(_frames(np.asarray(processed, dtype=np.float64), sample_rate), _llr_order(sample_rate))
    numerator = _quadratic_forms(ref_lags, deg_poly)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = numerator / denominator
    ratio = np.where(np.isfinite(ratio) & (ratio > 0), ratio, 1000.0)
    return _mean_of_lowest(np.log(ratio), keep)


def _critical_filters(n_half: int, sample_rate: int) -> np.ndarray:
    """Gaussian-shaped critical-band weights (25, n_half) over FFT bins 0 .. n_half-1."""
    nyquist = sample_rate / 2.0
    bins = np.arange(n_half)
    centre = np.floor(_WSS_CENTRES / nyquist * n_half)[:, None]
    width = (_WSS_BANDWIDTHS / nyquist * n_half)[:, None]
    norm = np.log(_WSS_BANDWIDTHS[0]) - np.log(_WSS_BANDWIDTHS)[:, None]
    filters = np.exp(-11.0 * ((bins - centre) / width) ** 2 + norm)
    return filters * (filters > np.exp(-30.0 / (2.0 * 2.303)))  # cut at the -30 dB point


def _nearest_peaks(slope: np.ndarray, energy: np.ndarray) -> np.ndarray:
    """Per band, the energy of the nearest spectral peak (Klatt), following Loizou's search.

    Loizou's search, per frame and band i: on a rising slope walk up while the slope stays
    > 0 and take the energy of the last band walked; otherwise walk down while it stays <= 0
    and take the band above where it stopped. Written as index arithmetic over all frames
    at once (no library does this search; the double Python loop cost 14 ms a file): the
    same bands are picked, so the values are identical.
    """
    n = slope.shape[0]
    index = np.arange(n)[:, None]
    rising = slope > 0
    # first j >= i where the upward walk stops (slope not > 0), n when it never does
    stop_up = np.flip(np.minimum.accumulate(np.flip(np.where(rising, n, index), axis=0), axis=0), axis=0)
    # last j <= i where the downward walk stops (slope not <= 0), -1 when it never does
    stop_down = np.maximum.accumulate(np.where(slope <= 0, -1, index), axis=0)
    bands = np.where(rising, stop_up - 1, stop_down + 1)
    return np.take_along_axis(energy, bands, axis=0)


@dataclass(frozen=True)
class WssReference:
    """The reference side of ``wss``: band energies (25, F), slopes and Klatt weights (24, F)."""

    db: np.ndarray
    slope: np.ndarray
    weights: np.ndarray


def _wss_band_db(frames: np.ndarray, sample_rate: int) -> np.ndarray:
    n_fft = int(2 ** np.ceil(np.log2(2 * frames.shape[1])))
    filters = _critical_filters(n_fft // 2, sample_rate)
    power = np.abs(np.fft.rfft(frames, n_fft, axis=1))[:, : n_fft // 2] ** 2
    return 10.0 * np.log10(np.maximum(filters @ power.T, 1e-10))  # (25, F)


def _wss_weights(db: np.ndarray, slope: np.ndarray) -> np.ndarray:
    k_max, k_locmax = 20.0, 1.0  # Klatt's constants
    peaks = _nearest_peaks(slope, db)
    w_max = k_max / (k_max + db.max(axis=0) - db[:-1])
    w_local = k_locmax / (k_locmax + peaks - db[:-1])
    return w_max * w_local


def _wss_side(x: np.ndarray, sample_rate: int) -> WssReference:
    db = _wss_band_db(_frames(np.asarray(x, dtype=np.float64), sample_rate), sample_rate)
    slope = np.diff(db, axis=0)
    return WssReference(db, slope, _wss_weights(db, slope))


def wss(reference: np.ndarray, processed: np.ndarray, sample_rate: int, keep: float = 0.95,
        reference_side: WssReference | None = None) -> float:
    """Weighted spectral slope distance (Klatt 1982): mean over the ``keep`` best frames."""
    ref = _wss_side(reference, sample_rate) if reference_side is None else reference_side
    deg = _wss_side(processed, sample_rate)
    w = 0.5 * (ref.weights + deg.weights)
    ref_slope, deg_slope = ref.slope, deg.slope
    distortion = np.sum(w * (ref_slope - deg_slope) ** 2, axis=0) / np.sum(w, axis=0)
    return _mean_of_lowest(distortion, keep)


def _mean_of_lowest(values: np.ndarray, keep: float) -> float:
    ordered = np.sort(values)
    return float(np.mean(ordered[: max(1, int(round(len(ordered) * keep)))]))


@dataclass(frozen=True)
class CompositeReference:
    """The reference side of ``composite``: the 16-kHz float64 reference, its LLR and WSS parts."""

    signal: np.ndarray
    llr: tuple[np.ndarray, np.ndarray]
    wss: WssReference


def composite_reference(reference: np.ndarray, sample_rate: int) -> CompositeReference:
    """What ``composite`` computes from the reference alone, to reuse for several systems."""
    ref = resample(reference, sample_rate, PESQ_RATE).astype(np.float64)
    return CompositeReference(ref, _llr_reference(ref, PESQ_RATE), _wss_side(ref, PESQ_RATE))


def composite(reference: np.ndarray, processed: np.ndarray, sample_rate: int, pesq_score: float | None = None,
              reference_side: CompositeReference | None = None) -> dict[str, float]:
    """CSIG, CBAK, COVL (Hu & Loizou 2008, eqs. 2-4) at 16 kHz, each clipped to [1, 5].

    The PESQ term is WB-PESQ, as in the VoiceBank-DEMAND literature (SEGAN, MetricGAN,
    CMGAN) whose tables these numbers are compared with; pass ``pesq_score`` to reuse one
    (``wb_pesq`` of the same pair: the same number), ``reference_side``
    (``composite_reference`` of this reference) to reuse the reference side.
    """
    side = composite_reference(reference, sample_rate) if reference_side is None else reference_side
    ref = side.signal
    deg = resample(processed, sample_rate, PESQ_RATE).astype(np.float64)
    pesq_value = wb_pesq(ref, deg, PESQ_RATE) if pesq_score is None else pesq_score
    llr_value = llr(ref, deg, PESQ_RATE, reference_side=side.llr)
    wss_value = wss(ref, deg, PESQ_RATE, reference_side=side.wss)
    seg_snr = segmental_snr(ref, deg, PESQ_RATE)
    csig = 3.093 - 1.029 * llr_value + 0.603 * pesq_value - 0.009 * wss_value
    cbak = 1.634 + 0.478 * pesq_value - 0.007 * wss_value + 0.063 * seg_snr
    covl = 1.594 + 0.805 * pesq_value - 0.512 * llr_value - 0.007 * wss_value
    return {name: float(np.clip(v, 1.0, 5.0)) for name, v in (("CSIG", csig), ("CBAK", cbak), ("COVL", covl))}
