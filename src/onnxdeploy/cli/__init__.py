"""The ``onnxdeploy`` command line: one module per subcommand, wired by :mod:`onnxdeploy.cli.main`."""
