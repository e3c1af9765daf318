"""Fuzz suite: a seeded generator of malicious and malformed models and command lines (`corpus`), and a runner that
drives the `onnxdeploy` CLI over it in subprocesses and checks each run for tracebacks, hangs, changed inputs, writes
outside the output path, reads outside the model's folder, partial outputs and orphaned processes (`runner`)."""
