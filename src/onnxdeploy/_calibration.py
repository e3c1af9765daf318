"""Calibration samples from the data users have: arrays, ONNX test-data folders, or a folder of images.

:func:`load_calibration` returns a list of feed dicts (``{input name: array}``, one model call each), checked
against the model's input names, dtypes and shapes, bounded in count and bytes. What ``spec`` may be:

- a dict ``{input: array}`` or a list of feed dicts (Python only);
- an ``.npz`` holding one array per input, named after it; an array with one more dim than the input holds one
  sample per row of its leading axis (``x: (64, 1, 3, 224, 224)`` is 64 samples of ``1x3x224x224``); an array of the
  input's rank is a batch, split into samples of the model's batch size (1 when it is symbolic), so
  ``x: (64, 3, 224, 224)`` is also 64 samples for a ``1x3x224x224`` input;
- one ``.npy`` file, for a model with one input (the same two layouts);
- a folder of ``.npy``/``.pb`` files: ``NAME.npy`` per input (stacked as above), ``NAME_K.npy`` (input NAME of sample
  K), or, for a one-input model, any names (each file a sample or a stack of them);
- a folder of sample folders, the ONNX ``test_data_set_K`` layout (``input_J.pb``, or ``NAME.npy`` files);
- a folder of images (``.jpg``, ``.jpeg``, ``.png``, ``.bmp``; needs Pillow, ``pip install 'onnxdeploy[images]'``)
  for a model with one image input: converted to RGB (grey for one channel), resized to cover the input's height x
  width (bilinear, aspect ratio kept) and centre-cropped (``resize="stretch"`` to stretch instead), scaled to [0, 1],
  normalized with ``mean``/``std`` (ImageNet's by default, or the model's ``mean``/``std`` metadata), laid out NCHW
  or NHWC as the input's shape says. The size comes from the input's static dims (``image_size`` when they are
  symbolic). A uint8 input gets the raw 0-255 pixels. The result's ``description`` states all of it.

More samples than ``limit`` (or than :data:`MAX_SAMPLES` when no limit is given) are refused unless ``limit`` is
given, which keeps a seeded random subset (``seed``), stated in the description; more than ``max_bytes`` in all is an
error. :func:`split_holdout` splits samples into disjoint calibration and held-out sets.
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Mapping, Sequence

import numpy as np

from onnxdeploy.errors import MissingDependencyError, UserInputError
from onnxdeploy._io import ModelLike, as_proto

if TYPE_CHECKING:
    from onnxdeploy._run import InputSpec

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")
ARRAY_SUFFIXES = (".npy", ".pb")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
MAX_SAMPLES = 4096  # without an explicit limit
MAX_BYTES = 2 << 30  # all samples together, in memory
LAYOUTS = ("NCHW", "NHWC")
RESIZES = ("crop", "stretch")


class CalibrationSet(list):
    """The samples (a list of feed dicts) and where they came from: ``kind``, ``source`` and ``description`` (one
    line stating the file layout, or the image resize/normalize/layout applied)."""

    def __init__(self, samples=(), *, kind: str = "", source: str = "", description: str = "",
                 origins: Sequence[str] = ()) -> None:
        super().__init__(samples)
        self.kind = kind
        self.source = source
        self.description = description
        self.origins = list(origins)  # where each sample came from (file, folder or row)

    @property
    def nbytes(self) -> int:
        return sum(np.asarray(a).nbytes for s in self for a in s.values())

    def to_dict(self) -> dict:
        return {"kind": self.kind, "source": self.source, "description": self.description, "samples": len(self),
                "bytes": self.nbytes}


@dataclass(frozen=True)
class Calibration:
    """A calibration spec and how to read it, passed wherever ``calibration=`` is accepted (quantize, deploy,
    convert): ``load_calibration(spec.source, model, limit=..., ...)`` with these options."""

    source: object
    limit: int | None = None
    seed: int = 0
    image_size: int | Sequence[int] | None = None
    mean: Sequence[float] | None = None
    std: Sequence[float] | None = None
    layout: str | None = None
    resize: str = "crop"
    max_bytes: int = MAX_BYTES

    def __str__(self) -> str:
        return str(self.source)

    def load(self, model: ModelLike) -> CalibrationSet:
        return load_calibration(self.source, model, limit=self.limit, seed=self.seed, image_size=self.image_size,
                                mean=self.mean, std=self.std, layout=self.layout, resize=self.resize,
                                max_bytes=self.max_bytes)


@dataclass(frozen=True)
class ImageRecipe:
    """How images become one input's tensor: every choice stated."""

    input: str
    height: int
    width: int
    channels: int
    layout: str  # NCHW or NHWC
    batch: int
    dtype: np.dtype
    mean: tuple[float, ...]
    std: tuple[float, ...]
    resize: str
    mean_source: str = "ImageNet"
    notes: tuple[str, ...] = field(default_factory=tuple)

    def describe(self) -> str:
        fit = ("resized to cover {h}x{w} (bilinear, aspect kept), centre-cropped" if self.resize == "crop"
               else "stretched to {h}x{w} (bilinear)").format(h=self.height, w=self.width)
        color = "RGB" if self.channels == 3 else "grey" if self.channels == 1 else f"{self.channels} channels"
        if self.dtype.kind in "ui":
            scale = f"raw 0-255 pixels as {self.dtype}"
        else:
            nums = lambda v: "(" + ", ".join(f"{x:g}" for x in v) + ")"  # noqa: E731
            scale = f"/255, mean {nums(self.mean)}, std {nums(self.std)} ({self.mean_source}), {self.dtype}"
        shape = f"{self.batch}x{self.channels}x{self.height}x{self.width}" if self.layout == "NCHW" else \
            f"{self.batch}x{self.height}x{self.width}x{self.channels}"
        return f"{fit}, {color}, {scale}, {self.layout} {shape} for input {self.input!r}" + \
            "".join(f"; {n}" for n in self.notes)


# ---------------------------------------------------------------- arrays


def split_samples(arrays: Mapping[str, np.ndarray], specs: Sequence["InputSpec"], where: str) -> list[dict]:
    """Turn ``{input: stacked array}`` into per-sample feeds: an array with one more dim than the input holds samples
    along axis 0; one of the input's rank is a batch, split into items of the model's batch size (1 when symbolic)."""
    from onnxdeploy._run import check_input_names

    check_input_names(arrays, specs, f"calibration {where}")
    missing = [s.name for s in specs if s.name not in arrays]
    if missing:
        raise UserInputError(f"calibration {where} lacks input(s) {', '.join(missing)}",
                             hint=f"the model's inputs are {', '.join(s.name for s in specs)}")
    per_input: dict[str, list[np.ndarray]] = {}
    for s in specs:
        arr = np.asarray(arrays[s.name])
        if s.shape is not None and arr.ndim == len(s.shape) + 1:
            per_input[s.name] = [arr[i] for i in range(arr.shape[0])]
        elif s.shape is not None and arr.ndim == len(s.shape) and arr.ndim > 0:
            step = s.shape[0] if isinstance(s.shape[0], int) and s.shape[0] > 0 else 1
            if arr.shape[0] % step:
                raise UserInputError(f"calibration {where}: input {s.name!r} has {arr.shape[0]} rows, not a multiple "
                                     f"of the model's batch size {step}")
            per_input[s.name] = [arr[i : i + step] for i in range(0, arr.shape[0], step)]
        else:
            per_input[s.name] = [arr]
    counts = {name: len(v) for name, v in per_input.items()}
    if len(set(counts.values())) > 1:
        raise UserInputError(f"calibration {where}: inputs hold different numbers of samples ({counts})",
                             hint="give every input the same number of samples along axis 0")
    n = next(iter(counts.values()), 0)
    return [{name: per_input[name][i] for name in per_input} for i in range(n)]


def _sample_folder(folder: Path, specs: Sequence["InputSpec"]) -> dict[str, np.ndarray]:
    """One ``test_data_set_K`` folder: ``input_J.pb`` files (through :func:`read_test_data_dir`), else ``.npy``
    files named after the inputs (or ``input_J.npy``, or anything for a one-input model)."""
    from onnxdeploy._run import read_tensor_file, read_test_data_dir

    feeds = read_test_data_dir(folder, specs, "input")
    for f in sorted(f for f in folder.iterdir() if f.suffix == ".npy"):
        name = f.stem if any(s.name == f.stem for s in specs) else None
        if name is None and f.stem.startswith("input_") and f.stem[6:].isdigit() and int(f.stem[6:]) < len(specs):
            name = specs[int(f.stem[6:])].name
        if name is None and len(specs) == 1:
            name = specs[0].name
        if name is None:
            raise UserInputError(f"calibration file {f}: cannot tell which input it is",
                                 hint=f"name files after the inputs ({', '.join(s.name + '.npy' for s in specs)}) "
                                 "or input_K.pb")
        feeds[name] = read_tensor_file(f)
    return feeds


def _flat_folder(path: Path, files: list[Path], specs: Sequence["InputSpec"]) -> tuple[list[dict], list[str]]:
    from onnxdeploy._run import read_tensor_file

    names = [s.name for s in specs]
    if all(f.stem in names for f in files):  # one stacked file per input
        samples = split_samples({f.stem: read_tensor_file(f) for f in files}, specs, str(path))
        return samples, [f"{path.name} row {i}" for i in range(len(samples))]
    if len(specs) == 1:  # every file is one sample (or a batch) of the only input
        samples, origins = [], []
        for f in files:
            got = split_samples({names[0]: read_tensor_file(f)}, specs, str(f))
            samples += got
            origins += [f.name] * len(got)
        return samples, origins
    groups: dict[str, dict] = {}
    for f in files:  # NAME_K.npy: input NAME of sample K
        stem, _, k = f.stem.rpartition("_")
        if stem not in names:
            raise UserInputError(f"calibration file {f}: not named after an input",
                                 hint=f"use NAME_K.npy with NAME one of {', '.join(names)}, or one folder per sample")
        groups.setdefault(k, {})[stem] = read_tensor_file(f)
    keys = sorted(groups, key=lambda k: (len(k), k))
    return [groups[k] for k in keys], [f"sample {k}" for k in keys]


def _check_file_bytes(path: Path, max_bytes: int) -> None:
    size = path.stat().st_size
    if size > max_bytes:
        raise UserInputError(f"calibration data {path}: {_mb(size)} on disk, over the {_mb(max_bytes)} limit",
                             hint="take fewer samples (--samples N / limit=N on a folder), or raise max_bytes")


def _from_path(path: Path, model: ModelLike, specs, opts: Calibration) -> CalibrationSet:
    from onnxdeploy._run import read_npz, read_tensor_file

    if not path.exists():
        raise UserInputError(f"calibration data {path}: no such file or folder")
    if path.is_file():
        _check_file_bytes(path, opts.max_bytes)
        if path.suffix == ".npz":
            samples = split_samples(read_npz(path), specs, str(path))
        elif path.suffix == ".npy" and len(specs) == 1:
            samples = split_samples({specs[0].name: read_tensor_file(path)}, specs, str(path))
        else:
            raise UserInputError(f"calibration data {path}: expected an .npz file (or .npy for a one-input model) "
                                 "or a folder", hint="save with np.savez(path, **arrays), or give a folder of images")
        return CalibrationSet(samples, kind="npz" if path.suffix == ".npz" else "npy", source=str(path),
                              origins=[f"{path.name} row {i}" for i in range(len(samples))],
                              description=f"{len(samples)} samples from {path.name} (split along axis 0)")
    subfolders = sorted((p for p in path.iterdir() if p.is_dir()), key=_natural)
    files = sorted((f for f in path.iterdir() if f.is_file()), key=_natural)
    arrays = [f for f in files if f.suffix in ARRAY_SUFFIXES]
    images = [f for f in files if f.suffix.lower() in IMAGE_SUFFIXES]
    if images and (arrays or subfolders):
        raise UserInputError(f"calibration folder {path}: holds both images and arrays/sample folders",
                             hint="keep one kind of calibration data per folder")
    if images:
        return _images(path, images, model, specs, opts)
    if subfolders:
        found = len(subfolders)
        subfolders = _subset(subfolders, opts, str(path), "sample folders")
        _check_file_bytes_sum(path, subfolders, opts.max_bytes)
        samples = [_sample_folder(p, specs) for p in subfolders]
        subset = f" (a seeded random subset of {found}, seed {opts.seed})" if len(subfolders) < found else ""
        return CalibrationSet(samples, kind="test_data_set", source=str(path), origins=[p.name for p in subfolders],
                              description=f"{len(samples)} sample folders (test_data_set layout) in {path.name}{subset}")
    if not arrays:
        raise UserInputError(f"calibration folder {path}: no .npy, .pb or image files in it",
                             hint=f"images ({', '.join(IMAGE_SUFFIXES)}), NAME.npy per input, or test_data_set_K "
                             "folders")
    _check_file_bytes_sum(path, arrays, opts.max_bytes)
    samples, origins = _flat_folder(path, arrays, specs)
    return CalibrationSet(samples, kind="npy folder", source=str(path), origins=origins,
                          description=f"{len(samples)} samples from {len(arrays)} array files in {path.name}")


def _check_file_bytes_sum(path: Path, entries: Sequence[Path], max_bytes: int) -> None:
    total = sum(f.stat().st_size for e in entries for f in ([e] if e.is_file() else e.iterdir()) if f.is_file())
    if total > max_bytes:
        raise UserInputError(f"calibration folder {path}: {_mb(total)} of files, over the {_mb(max_bytes)} limit",
                             hint="take fewer samples (--samples N / limit=N), or raise max_bytes")


def _natural(p: Path) -> tuple:
    import re

    return tuple((0, int(t), "") if t.isdigit() else (1, 0, t) for t in re.split(r"(\d+)", p.name))


def _mb(n: int) -> str:
    for unit, size in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n} bytes"


# ---------------------------------------------------------------- images


def _image_input(specs: Sequence["InputSpec"], where: str) -> "InputSpec":
    if len(specs) != 1:
        raise UserInputError(f"calibration images in {where}: the model has {len(specs)} inputs "
                             f"({', '.join(s.name for s in specs)}); images feed a model with one image input",
                             hint="give an .npz with one array per input instead")
    spec = specs[0]
    if spec.shape is None or len(spec.shape) != 4:
        raise UserInputError(f"calibration images in {where}: input {spec.name!r} has shape "
                             f"{_shape_text(spec.shape)}, not an image batch (rank 4, NCHW or NHWC)",
                             hint="give an .npz or .npy files instead")
    if spec.dtype.kind not in "fui":
        raise UserInputError(f"calibration images in {where}: input {spec.name!r} is {spec.dtype}, not a float or "
                             "uint8 image")
    return spec


def _shape_text(shape) -> str:
    return "?" if shape is None else "x".join(str(d) for d in shape)


def _layout(spec: "InputSpec", layout: str | None) -> str:
    shape = spec.shape
    guess = "NCHW" if shape[1] in (1, 3, 4) else "NHWC" if shape[3] in (1, 3, 4) else None
    if layout is None:
        if guess is None and not (isinstance(shape[1], int) or isinstance(shape[3], int)):
            return "NCHW"  # stated in the description as an assumption
        if guess is None:
            raise UserInputError(f"input {spec.name!r} has shape {_shape_text(shape)}: no 1, 3 or 4-channel axis, "
                                 "so its layout is unknown", hint="pass layout='NCHW' or 'NHWC' (--layout)")
        return guess
    layout = layout.upper()
    if layout not in LAYOUTS:
        raise UserInputError(f"unknown layout {layout!r}", hint=f"one of {', '.join(LAYOUTS)}")
    channels = shape[1] if layout == "NCHW" else shape[3]
    if isinstance(channels, int) and channels not in (1, 3, 4):
        raise UserInputError(f"layout {layout} does not fit input {spec.name!r} of shape {_shape_text(shape)}: "
                             f"{channels} channels", hint=f"its layout looks like {guess}" if guess else None)
    return layout


def _metadata_norm(model: ModelLike) -> tuple[tuple | None, tuple | None]:
    props = {p.key.lower(): p.value for p in as_proto(model).metadata_props}

    def floats(*keys):
        for k in keys:
            if k in props:
                try:
                    return tuple(float(x) for x in props[k].replace("[", "").replace("]", "").split(",") if x.strip())
                except ValueError:
                    return None
        return None

    return floats("mean", "image_mean"), floats("std", "image_std")


def image_recipe(model: ModelLike, specs: Sequence["InputSpec"], where: str, *, image_size=None, mean=None,
                 std=None, layout: str | None = None, resize: str = "crop") -> ImageRecipe:
    """How images in ``where`` become the model's input: size, layout, normalization, each from the arguments, else
    the model (static dims, ``mean``/``std`` metadata), else the stated defaults."""
    spec = _image_input(specs, where)
    if resize not in RESIZES:
        raise UserInputError(f"unknown resize {resize!r}", hint=f"one of {', '.join(RESIZES)}")
    lay = _layout(spec, layout)
    notes = []
    if layout is None and not isinstance(spec.shape[1], int) and not isinstance(spec.shape[3], int):
        notes.append("layout assumed NCHW (the channel axis is symbolic; set it with --layout)")
    batch, a, b, c = spec.shape
    channels, height, width = (a, b, c) if lay == "NCHW" else (c, a, b)
    channels = channels if isinstance(channels, int) else 3
    if image_size is not None:
        size = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
        if len(size) != 2 or min(size) < 1:
            raise UserInputError(f"image size {image_size!r}: give one side or (height, width)")
        for axis, want, got in (("height", height, size[0]), ("width", width, size[1])):
            if isinstance(want, int) and want != got:
                raise UserInputError(f"image size {size[0]}x{size[1]} contradicts input {spec.name!r} "
                                     f"({_shape_text(spec.shape)}): its {axis} is fixed to {want}")
        height, width = size
    elif not (isinstance(height, int) and isinstance(width, int)):
        raise UserInputError(f"input {spec.name!r} has symbolic height/width ({_shape_text(spec.shape)}): the image "
                             "size is unknown", hint="pass it: --image-size 224 (image_size=224 or (h, w))")
    meta_mean, meta_std = _metadata_norm(model)
    source = "given" if mean is not None or std is not None else "model metadata" if meta_mean or meta_std \
        else "ImageNet"
    default_mean = IMAGENET_MEAN if channels == 3 else (sum(IMAGENET_MEAN) / 3,) * channels
    default_std = IMAGENET_STD if channels == 3 else (sum(IMAGENET_STD) / 3,) * channels
    mean = tuple(mean if mean is not None else meta_mean or default_mean)
    std = tuple(std if std is not None else meta_std or default_std)
    for what, values in (("mean", mean), ("std", std)):
        if len(values) not in (1, channels):
            raise UserInputError(f"{what} has {len(values)} values, input {spec.name!r} has {channels} channels")
    if any(s == 0 for s in std):
        raise UserInputError("std holds a zero")
    return ImageRecipe(spec.name, int(height), int(width), channels, lay,
                       batch if isinstance(batch, int) and batch > 0 else 1, spec.dtype,
                       mean * (channels // len(mean)), std * (channels // len(std)), resize, source, tuple(notes))


def _read_image(path: Path, recipe: ImageRecipe, image) -> np.ndarray:
    """One image as ``C x H x W`` or ``H x W x C`` (the recipe's layout), normalized."""
    try:
        with image.open(path) as img:
            img = img.convert("L" if recipe.channels == 1 else "RGBA" if recipe.channels == 4 else "RGB")
            if recipe.resize == "crop":
                scale = max(recipe.width / img.width, recipe.height / img.height)
                w, h = max(recipe.width, round(img.width * scale)), max(recipe.height, round(img.height * scale))
                img = img.resize((w, h), image.BILINEAR)
                left, top = (w - recipe.width) // 2, (h - recipe.height) // 2
                img = img.crop((left, top, left + recipe.width, top + recipe.height))
            else:
                img = img.resize((recipe.width, recipe.height), image.BILINEAR)
            pixels = np.asarray(img)
    except (OSError, ValueError, image.DecompressionBombError) as err:
        raise UserInputError(f"calibration image {path}: not a readable image ({err})",
                             hint="remove it or convert it to .png/.jpg") from err
    pixels = pixels.reshape(recipe.height, recipe.width, recipe.channels)
    if recipe.dtype.kind in "ui":
        out = pixels.astype(recipe.dtype)
    else:
        out = (pixels.astype(np.float32) / 255.0 - np.asarray(recipe.mean, np.float32)) / np.asarray(recipe.std,
                                                                                                   np.float32)
        out = out.astype(recipe.dtype)
    return out.transpose(2, 0, 1) if recipe.layout == "NCHW" else out


def _images(path: Path, files: list[Path], model: ModelLike, specs, opts: Calibration) -> CalibrationSet:
    try:
        from PIL import Image
    except ImportError as err:
        raise MissingDependencyError(f"calibration images in {path} need Pillow, which is not installed",
                                     hint="pip install 'onnxdeploy[images]'") from err
    recipe = image_recipe(model, specs, str(path), image_size=opts.image_size, mean=opts.mean,
                          std=opts.std, layout=opts.layout, resize=opts.resize)
    found = len(files)
    files = _subset(files, opts, str(path), "images", per_sample=recipe.batch)
    per_image = recipe.height * recipe.width * recipe.channels * recipe.dtype.itemsize
    if per_image * len(files) > opts.max_bytes:
        raise UserInputError(f"calibration images in {path}: {len(files)} images of {_mb(per_image)} = "
                             f"{_mb(per_image * len(files))}, over the {_mb(opts.max_bytes)} limit",
                             hint="take fewer (--samples N / limit=N), or raise max_bytes")
    n = len(files) // recipe.batch * recipe.batch
    if n == 0:
        raise UserInputError(f"calibration images in {path}: {len(files)} images, fewer than the model's batch "
                             f"size {recipe.batch}")
    samples, origins = [], []
    for i in range(0, n, recipe.batch):
        group = files[i : i + recipe.batch]
        samples.append({recipe.input: np.stack([_read_image(f, recipe, Image) for f in group])})
        origins.append(", ".join(f.name for f in group))
    note = f" ({len(files) - n} left over: not a whole batch)" if n < len(files) else ""
    subset = f" (a seeded random subset of {found}, seed {opts.seed})" if len(files) < found else ""
    description = f"{n} images from {path.name}{subset}{note}: {recipe.describe()}"
    log.info("calibration: %s", description)
    return CalibrationSet(samples, kind="images", source=str(path), description=description, origins=origins)


# ---------------------------------------------------------------- bounds and the entry point


def _subset(items: list, opts: Calibration, where: str, what: str, per_sample: int = 1) -> list:
    """At most ``opts.limit`` samples (a seeded random subset, in the original order); without a limit, more than
    :data:`MAX_SAMPLES` is an error."""
    limit = opts.limit
    if limit is not None and limit < 1:
        raise UserInputError(f"calibration limit must be at least 1, got {limit}")
    if limit is None:
        if len(items) > MAX_SAMPLES * per_sample:
            raise UserInputError(f"calibration data {where}: {len(items)} {what}, more than {MAX_SAMPLES} samples",
                                 hint="take a seeded random subset with --samples N (limit=N)")
        return items
    keep = limit * per_sample
    if len(items) <= keep:
        return items
    rng = np.random.default_rng(opts.seed)
    return [items[i] for i in sorted(rng.choice(len(items), size=keep, replace=False))]


def _check(samples: CalibrationSet, specs, opts: Calibration) -> None:
    from onnxdeploy._run import validate_inputs

    if not samples:
        raise UserInputError(f"calibration data {samples.source}: holds no samples")
    for i, s in enumerate(samples):
        try:
            validate_inputs(specs, s)
        except UserInputError as err:
            origin = f" (from {samples.origins[i]})" if i < len(samples.origins) else ""
            raise UserInputError(f"calibration sample {i}: {err.message}{origin}", hint=err.hint) from err
    if samples.nbytes > opts.max_bytes:
        raise UserInputError(f"calibration data {samples.source}: {len(samples)} samples hold {_mb(samples.nbytes)}, "
                             f"over the {_mb(opts.max_bytes)} limit",
                             hint="take fewer (--samples N / limit=N), or raise max_bytes")


def load_calibration(spec, model: ModelLike, *, limit: int | None = None, seed: int = 0, image_size=None,
                     mean: Sequence[float] | None = None, std: Sequence[float] | None = None,
                     layout: str | None = None, resize: str = "crop", max_bytes: int = MAX_BYTES) -> CalibrationSet:
    """Calibration samples for ``model`` from ``spec`` (see the module doc for every kind), checked against its
    inputs: a :class:`CalibrationSet` (a list of feed dicts with ``description``). ``limit`` keeps a seeded random
    subset (``seed``) of at most that many samples; ``image_size`` (an int or (h, w)), ``mean``, ``std`` (per channel,
    on [0, 1] pixels), ``layout`` (NCHW/NHWC) and ``resize`` (crop/stretch) say how images are read. A
    :class:`Calibration` ``spec`` carries these options itself."""
    from onnxdeploy._run import input_specs

    if isinstance(spec, Calibration):
        return spec.load(model)
    opts = Calibration(spec, limit=limit, seed=seed, image_size=image_size, mean=mean, std=std, layout=layout,
                       resize=resize, max_bytes=max_bytes)
    specs = input_specs(model)
    if isinstance(spec, CalibrationSet):
        samples = CalibrationSet(spec, kind=spec.kind, source=spec.source, description=spec.description,
                                 origins=spec.origins)
    elif isinstance(spec, Mapping):
        samples = CalibrationSet(split_samples(spec, specs, "data"), kind="arrays", source="arrays")
    elif isinstance(spec, (list, tuple)):
        samples = CalibrationSet([dict(s) for s in spec], kind="feeds", source=f"{len(spec)} feed dicts")
    else:
        samples = _from_path(Path(spec), model, specs, opts)
    if samples.kind != "images" and limit is not None and len(samples) > limit:
        kept = _subset(list(range(len(samples))), opts, samples.source, "samples")
        samples = CalibrationSet([samples[i] for i in kept], kind=samples.kind, source=samples.source,
                                 description=f"{samples.description}; a seeded subset of {len(kept)} (seed {seed})",
                                 origins=[samples.origins[i] for i in kept if i < len(samples.origins)])
    elif samples.kind != "images":
        _subset(list(samples), opts, samples.source, "samples")  # over MAX_SAMPLES without a limit: an error
    _check(samples, specs, opts)
    if not samples.description:
        samples.description = f"{len(samples)} samples ({samples.source})"
    return samples


def split_holdout(samples: Sequence[Mapping[str, np.ndarray]], fraction: float, *,
                  seed: int | None = None) -> tuple[list[dict], list[dict]]:
    """``(calibration, held_out)``: disjoint sets, ``fraction`` of the samples held out (at least one; a whole
    number >= 1 is a count). In order (the last ones held out), or a seeded random split with ``seed``."""
    n = len(samples)
    if n < 2:
        raise UserInputError(f"cannot hold out samples from {n} sample{'s' * (n != 1)}: need at least 2",
                             hint="give more calibration samples")
    if fraction >= 1 and float(fraction).is_integer():
        held = int(fraction)
    elif 0 < fraction < 1:
        held = max(1, math.floor(n * fraction + 0.5))
    else:
        raise UserInputError(f"held-out fraction must be in (0, 1) or a whole count, got {fraction}")
    if held >= n:
        raise UserInputError(f"cannot hold out {held} of {n} samples: none would be left to calibrate",
                             hint="hold out fewer, or give more samples")
    order = list(range(n)) if seed is None else list(np.random.default_rng(seed).permutation(n))
    held_idx = set(order[n - held :])
    return ([dict(samples[i]) for i in range(n) if i not in held_idx],
            [dict(samples[i]) for i in range(n) if i in held_idx])
