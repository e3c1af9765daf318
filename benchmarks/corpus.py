"""A small corpus of real architectures for tests and benchmarks, built from `transformers` configs.

Every model has random weights (nothing is downloaded). ``tiny=True`` gives a small config of the same architecture
for fast tests. Other benchmarks import this module::

    from benchmarks.corpus import ARCHITECTURES, build, export_corpus_model   # or: sys.path insert + import corpus
    module, example_inputs, input_names = build("resnet50", tiny=True)
    path = export_corpus_model("bert", "build/corpus", exporter="dynamo", tiny=True)   # dynamic batch + sequence
    path = export_corpus_model("resnet50", "build/corpus", dynamic=False)               # static 1x3x224x224

Exports are cached under ``out_dir`` (one file per name/size/exporter/optimize); delete the folder to rebuild.
"""

from __future__ import annotations

from pathlib import Path

ARCHITECTURES = ["resnet50", "mobilenet_v2", "convnext", "vit", "bert", "gpt2"]

# dims that are dynamic in the exported model, per input name
DYNAMIC = {
    "pixel_values": {0: "batch"},
    "input_ids": {0: "batch", 1: "sequence"},
    "attention_mask": {0: "batch", 1: "sequence"},
}


def _torch():
    from onnxdeploy.errors import require

    return require("torch", extra="torch", purpose="building the benchmark corpus")


def _wrap(model, output: str, input_names):
    torch = _torch()

    class Wrapped(torch.nn.Module):
        """Call the HF model with keyword inputs and return one plain tensor."""

        def __init__(self, inner):
            super().__init__()
            self.inner = inner

    if list(input_names) == ["input_ids", "attention_mask"]:

        def forward(self, input_ids, attention_mask):
            return self.inner(input_ids=input_ids, attention_mask=attention_mask, return_dict=True)[output]

    elif list(input_names) == ["input_ids"]:

        def forward(self, input_ids):
            return self.inner(input_ids=input_ids, return_dict=True)[output]

    else:

        def forward(self, pixel_values):
            return self.inner(pixel_values=pixel_values, return_dict=True)[output]

    Wrapped.forward = forward
    return Wrapped(model)


def build(name: str, *, tiny: bool = False, batch: int = 1, seed: int = 0, attention: str = "eager"):
    """Return ``(module, example_inputs, input_names)`` for architecture ``name`` with random weights (eval mode).

    ``attention`` is the transformers attention implementation of ViT, BERT and GPT-2: ``"eager"`` (this corpus's
    historical choice) or ``"sdpa"`` (transformers' default: what a new user exports)."""
    torch = _torch()
    import transformers as tf

    if name not in ARCHITECTURES:
        from onnxdeploy.errors import UserInputError

        raise UserInputError(f"unknown corpus architecture {name!r}", hint=f"choose one of {', '.join(ARCHITECTURES)}")
    torch.manual_seed(seed)
    image = 64 if tiny else 224
    seq = 16 if tiny else 128
    if name == "resnet50":
        cfg = (
            tf.ResNetConfig(embedding_size=16, hidden_sizes=[16, 32, 64, 128], depths=[1, 1, 1, 1], num_labels=10)
            if tiny
            else tf.ResNetConfig(num_labels=1000)
        )
        model, names, out = tf.ResNetForImageClassification(cfg), ["pixel_values"], "logits"
    elif name == "mobilenet_v2":
        cfg = tf.MobileNetV2Config(depth_multiplier=0.35, image_size=image, num_labels=10) if tiny else tf.MobileNetV2Config(num_labels=1000)
        model, names, out = tf.MobileNetV2ForImageClassification(cfg), ["pixel_values"], "logits"
    elif name == "convnext":
        cfg = (
            tf.ConvNextConfig(hidden_sizes=[16, 32], depths=[1, 1], num_stages=2, num_labels=10)
            if tiny
            else tf.ConvNextConfig(num_labels=1000)
        )
        model, names, out = tf.ConvNextForImageClassification(cfg), ["pixel_values"], "logits"
    elif name == "vit":
        cfg = (
            tf.ViTConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                         image_size=image, patch_size=16, num_labels=10)
            if tiny
            else tf.ViTConfig(num_labels=1000)
        )
        cfg._attn_implementation = attention
        model, names, out = tf.ViTForImageClassification(cfg), ["pixel_values"], "logits"
    elif name == "bert":
        cfg = (
            tf.BertConfig(vocab_size=1000, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                          intermediate_size=64, max_position_embeddings=128)
            if tiny
            else tf.BertConfig()
        )
        cfg._attn_implementation = attention
        model, names, out = tf.BertModel(cfg), ["input_ids", "attention_mask"], "last_hidden_state"
    else:  # gpt2
        cfg = (
            tf.GPT2Config(vocab_size=1000, n_embd=32, n_layer=2, n_head=2, n_positions=128, use_cache=False,
                           bos_token_id=0, eos_token_id=0)
            if tiny
            else tf.GPT2Config(use_cache=False)
        )
        cfg._attn_implementation = attention
        model, names, out = tf.GPT2LMHeadModel(cfg), ["input_ids"], "logits"
    model.eval()
    module = _wrap(model, out, names).eval()
    g = torch.Generator().manual_seed(seed)
    inputs = []
    for n in names:
        if n == "pixel_values":
            inputs.append(torch.randn(batch, 3, image, image, generator=g))
        elif n == "input_ids":
            inputs.append(torch.randint(0, cfg.vocab_size, (batch, seq), generator=g))
        else:
            inputs.append(torch.ones(batch, seq, dtype=torch.int64))
    return module, tuple(inputs), names


def export_corpus_model(name: str, out_dir, *, exporter: str = "dynamo", optimize: bool = True, tiny: bool = False,
                        dynamic: bool | str = True, opset: int | None = None, verify: bool = True,
                        attention: str = "eager") -> Path:
    """Export architecture ``name`` to ``out_dir`` (cached: returns the existing file when present).

    Goes through :func:`onnxdeploy._export.export`, so the file is verified against PyTorch (example shape and a
    second shape). ``dynamic=True`` (the default) gives a symbolic ``batch`` dim, and ``sequence`` for the text models
    (BERT, GPT-2), see :data:`DYNAMIC`; ``dynamic=False`` gives the static example shapes (batch 1, 224x224 images or
    128 tokens; 64x64 / 16 tokens with ``tiny``); ``dynamic="batch"`` makes only the batch dim symbolic (a text
    model's sequence stays at its example length). ``opset`` is the exporter's opset (its default when None). The
    file name says the size, exporter, whether the exporter's optimizer ran, the opset when given, and
    ``-static``/``-batch`` for static / batch-only files, ``-sdpa`` for ``attention="sdpa"`` (see :func:`build`).
    ``verify=False`` skips the check against PyTorch.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    suffix = "-batch" if dynamic == "batch" else ("" if dynamic else "-static")
    path = out_dir / (f"{name}{'-tiny' if tiny else ''}-{exporter}{'-opt' if optimize else ''}"
                      f"{f'-op{opset}' if opset else ''}{suffix}{'-sdpa' if attention == 'sdpa' else ''}.onnx")
    if path.exists():
        return path
    from onnxdeploy._export import export

    module, inputs, names = build(name, tiny=tiny, attention=attention)
    if dynamic == "batch":
        dims = {n: {0: "batch"} for n in names}
    else:
        dims = {n: DYNAMIC[n] for n in names} if dynamic else None
    export(module, inputs, path, input_names=names, output_names=["output"], dynamic=dims, opset=opset,
           exporter=exporter, optimize=optimize, verify=verify, atol=1e-3, rtol=1e-2)
    return path


if __name__ == "__main__":  # quick smoke: build every architecture tiny and run it
    import sys

    torch = _torch()
    for arch in sys.argv[1:] or ARCHITECTURES:
        m, x, n = build(arch, tiny=True)
        with torch.no_grad():
            y = m(*x)
        print(arch, n, [tuple(t.shape) for t in x], tuple(y.shape))
