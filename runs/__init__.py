"""The experiment runner and the ``stepsize`` command line."""
