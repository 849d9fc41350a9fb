"""Listening pages: HTML reports with audio, spectrograms and per-file drill-down.

``media`` turns signals into report assets (audio at one playback gain per file, palette
PNG spectrograms on a shared scale), ``html`` holds the page shell and tables, ``compare``
and ``consistency`` build the pages of ``mal compare`` and ``mal consistency``. Pages are
one folder with relative links and no network access: they open from ``file://``.
"""
