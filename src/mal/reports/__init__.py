"""Reports: result tables (:mod:`~mal.reports.tables`) and listening pages (:mod:`~mal.reports.pages`)."""
