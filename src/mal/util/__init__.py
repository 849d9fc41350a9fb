"""Helpers every layer may use: atomic files (:mod:`~mal.util.files`), progress lines (:mod:`~mal.util.progress`)."""
