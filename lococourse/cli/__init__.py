"""The ``lococourse`` command line: one module per subcommand (see :mod:`lococourse.cli.main`)."""
