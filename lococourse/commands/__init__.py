"""Subcommands of the ``lococourse`` command line (each module: ``add_arguments`` and ``run``)."""
