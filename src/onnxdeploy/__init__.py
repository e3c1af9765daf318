"""onnxdeploy: take a model from PyTorch to a verified, optimized deployment.

The implementation lives in private modules (``_io``, ``_verify``, ``_optimize``, ...); this flat namespace is the
public API, as in onnx-ir: ``onnxdeploy.export(...)``, ``onnxdeploy.optimize(...)``, ``onnxdeploy.Editor``. Names are
loaded lazily so that ``import onnxdeploy`` (and the CLI's ``--help``) stays fast: heavy libraries (onnx_ir,
onnxruntime, torch) are imported by the verbs that need them. The public subpackages are ``onnxdeploy.targets`` (one
module per engine), ``onnxdeploy.debug``, ``onnxdeploy.passes``, ``onnxdeploy.errors`` and ``onnxdeploy.examples``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# private module -> the public names it defines (the one table of the public API)
_MODULES: dict[str, tuple[str, ...]] = {
    "_io": ("load", "save", "load_proto", "load_structure", "check_model_path", "check_output_path",
            "atomic_write_bytes", "atomic_write_text", "operation"),
    "_inspect": ("inspect", "ModelSummary"),
    "_run": ("run", "run_model", "RunResult", "synthesize_inputs", "prepare_inputs", "input_specs", "output_specs",
             "InputSpec", "create_session", "read_npz", "read_tensor_file", "read_test_data_dir"),
    "_numerics": ("compare_outputs", "Comparison", "TensorDiff", "Tolerance"),
    "_verify": ("Inputs", "verify", "Verifier", "Verification", "interface_changes", "run_checked", "check_expected"),
    "_build": ("GraphBuilder",),
    "_edit": ("Editor", "edit", "EditReport"),
    "_recipes": ("apply_recipe", "dump_recipe", "load_recipe"),
    "_diff": ("diff",),
    "_export": ("export", "ExportReport", "register_op", "custom_op", "OpMapping", "random_inputs", "example_hint"),
    "_torch_target": ("load_torch_target",),
    "_llm": ("cache_layout", "CacheLayout"),
    "_generate": ("generate", "GenerationReport", "compare_generation", "decode_speed", "DecoderSignature"),
    "_optimize": ("optimize", "OptimizeResult", "OptimizeReport"),
    "_quantize": ("quantize", "QuantizeReport"),
    "_weight_quant": ("quantize_weights", "WeightQuantReport"),
    "_decoder_optimize": ("optimize_decoder",),
    "_calibration": ("load_calibration", "split_holdout", "Calibration", "CalibrationSet"),
    "_machine": ("machine_report", "MachineReport", "peak_flops"),
    "_precision": ("choose_precision", "PrecisionChoice", "Budget", "Candidate"),
    "_bench": ("bench", "ratio_words"),
    "_check": ("check",),
    "_legalize": ("legalize", "LegalizeResult", "LegalizeReport"),
    "_deploy": ("deploy", "DeployReport", "DeployStepFailed", "DeployContext", "PIPELINE", "run_pipeline"),
    "_render": ("render", "serve_netron", "stop_netron"),
    "_suggest": ("did_you_mean",),
    "targets": ("convert", "run_artifact", "get_target"),
    "debug": ("probe", "compare", "reduce"),
    "errors": ("OnnxDeployError", "UserInputError", "ModelFileError", "InvalidModelError", "UnsupportedError",
               "OutputsDisagree"),
}
# names whose public spelling differs from the private one: public -> (module, name)
_RENAMED: dict[str, tuple[str, str]] = {
    "check_optimize_skip": ("_optimize", "check_skip"),
    "OPTIMIZE_STEPS": ("_optimize", "STEP_NAMES"),
    "check_optimize_preset": ("_decoder_optimize", "check_preset"),
    "OPTIMIZE_PRESETS": ("_decoder_optimize", "PRESETS"),
}
_SUBPACKAGES = ("targets", "debug", "passes", "errors", "examples", "cli", "serving")

_API: dict[str, tuple[str, str]] = {name: (module, name) for module, names in _MODULES.items() for name in names}
_API.update(_RENAMED)

__all__ = ["__version__", *_API, *(p for p in _SUBPACKAGES if p != "cli")]


def __getattr__(name: str) -> Any:
    if name in _SUBPACKAGES or (name.startswith("_") and name.lstrip("_") and not name.startswith("__")):
        try:
            return importlib.import_module(f"{__name__}.{name}")
        except ModuleNotFoundError as err:
            raise AttributeError(f"module 'onnxdeploy' has no attribute {name!r}") from err
    target = _API.get(name)
    if target is None:
        raise AttributeError(f"module 'onnxdeploy' has no attribute {name!r}")
    module, attribute = target
    value = getattr(importlib.import_module(f"{__name__}.{module}"), attribute)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


if TYPE_CHECKING:  # pragma: no cover
    from onnxdeploy import debug, errors, examples, passes, targets  # noqa: F401
    from onnxdeploy._deploy import deploy  # noqa: F401
    from onnxdeploy._edit import Editor, edit  # noqa: F401
    from onnxdeploy._export import export  # noqa: F401
    from onnxdeploy._inspect import inspect  # noqa: F401
    from onnxdeploy._io import load, load_proto, save  # noqa: F401
    from onnxdeploy._numerics import Tolerance, compare_outputs  # noqa: F401
    from onnxdeploy._optimize import optimize  # noqa: F401
    from onnxdeploy._quantize import quantize  # noqa: F401
    from onnxdeploy._run import run, synthesize_inputs  # noqa: F401
    from onnxdeploy._verify import Inputs, Verification, Verifier, verify  # noqa: F401
    from onnxdeploy.errors import OnnxDeployError  # noqa: F401
