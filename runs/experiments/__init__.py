"""The bundled experiments: TOML training comparisons (``*.toml``) and Python modules for the
experiments that are not training runs (``runs.study`` runs them)."""
