"""Audio: reading and writing files (:mod:`mal.audio.io`), resampling, level, and the STFT/ERB
front end of the DeepFilterNets (:mod:`mal.audio.dsp`). The lowest layer above :mod:`mal.util`."""

from mal.audio.io import (
    AUDIO_EXTENSIONS,
    AudioError,
    CONTAINERS,
    FALLBACK_EXTENSION,
    LEVEL_BLOCK,
    LIMIT_CEILING,
    LIMIT_KNEE,
    active_speech_level,
    audio_info,
    check_audio_file,
    check_samples,
    error_reason,
    list_audio,
    missing_frames,
    needs_clipping,
    normalize_active_level,
    output_format,
    peak_normalize,
    read_audio,
    readable_extensions,
    resample,
    soft_limit,
    writable,
    write_audio,
)

__all__ = ['AUDIO_EXTENSIONS', 'AudioError', 'CONTAINERS', 'FALLBACK_EXTENSION', 'LEVEL_BLOCK', 'LIMIT_CEILING', 'LIMIT_KNEE', 'active_speech_level', 'audio_info', 'check_audio_file', 'check_samples', 'error_reason', 'list_audio', 'missing_frames', 'needs_clipping', 'normalize_active_level', 'output_format', 'peak_normalize', 'read_audio', 'readable_extensions', 'resample', 'soft_limit', 'writable', 'write_audio']
