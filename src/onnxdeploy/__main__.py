from onnxdeploy.cli.main import entry

entry()
