"""`onnxdeploy generate`: greedy generation with a KV-cache decoder on onnxruntime, checked against PyTorch."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from onnxdeploy.cli.common import PANEL_MODEL, JsonOpt, ModelArg, ProviderOpt

EXAMPLES = """[b]Examples[/b]

  onnxdeploy generate llm.onnx --prompt-ids 1,2,3 --max-new-tokens 32

  onnxdeploy generate llm.onnx --prompt-ids 1,2,3 --reference "hf:llama?hidden_size=64&num_hidden_layers=2"

  onnxdeploy generate llm_int4.onnx --prompt-ids 1,2,3 --reference model.py:build --min-agreement 0.5 --json

  onnxdeploy generate llm_int4.onnx --prompt-ids 1,2,3 --reference llm.onnx --min-agreement 0   [dim](int4 vs its fp32 model)[/dim]"""


def generate(
    model: ModelArg,
    prompt_ids: Annotated[str, typer.Option("--prompt-ids", help="Prompt token ids, comma separated: 1,2,3.",
                                            show_default=False)],
    max_new_tokens: Annotated[int, typer.Option("--max-new-tokens", help="New tokens to generate.")] = 16,
    reference: Annotated[Optional[str], typer.Option(
        "--reference", help="PyTorch model with the same weights (hf:ARCH?key=value, package.module:factory, "
        "path/to/file.py:factory; a hf: spec's random weights come from its seed= field, default 0, as in export), "
        "or another ONNX decoder (model.onnx, e.g. the fp32 model of a quantized one): runs its greedy generation "
        "on the same prompt and reports token agreement and per-step logits error.")] = None,
    min_agreement: Annotated[float, typer.Option(
        "--min-agreement", help="With --reference: exit with code 3 when fewer than this share of the new tokens "
        "match PyTorch's before the first difference.")] = 1.0,
    threads: Annotated[Optional[int], typer.Option("--threads", help="onnxruntime intra-op threads.")] = None,
    provider: ProviderOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Generate tokens greedily with a KV-cache decoder (prefill, then decode steps); time to first token, tokens/s."""
    from onnxdeploy.cli import output as out
    from onnxdeploy import generate as generate_api
    from onnxdeploy.errors import OutputsDisagree

    report = generate_api(model, prompt_ids, max_new_tokens=max_new_tokens, reference=reference,
                          providers=provider, threads=threads)
    if as_json:
        out.print_json(report)
    else:
        _show(out, report)
    if report.agreement is not None and report.agreement < min_agreement:
        raise OutputsDisagree(
            f"generated tokens differ from {_who(report)}'s from step {report.matching}: {report.matching} of "
            f"{len(report.tokens)} match (agreement {report.agreement:.0%} < {min_agreement:.0%})",
            hint="a quantized model may drift: lower --min-agreement to accept it; for an fp32 model compare the "
                 "per-step logits above, and check that --reference has the same weights")


def _who(report) -> str:
    return "PyTorch" if report.reference_kind == "pytorch" else "the reference model"


def _show(out, report) -> None:
    who = "PyTorch" if report.reference_kind == "pytorch" else "reference"
    rows = [["prompt", ", ".join(map(str, report.prompt_ids))],
            ["tokens (onnxruntime)", ", ".join(map(str, report.tokens))]]
    if report.reference_tokens is not None:
        rows.append([f"tokens ({who})", ", ".join(map(str, report.reference_tokens))])
        rows.append(["agreement", f"{report.matching}/{len(report.tokens)} tokens identical "
                                  f"({report.agreement:.0%}); steps agreeing teacher-forced "
                                  f"{report.token_agreement:.0%}"])
        if report.max_abs is not None:
            rows.append([f"logits vs {who}", f"max abs {report.max_abs:.3g}, min cosine {report.min_cosine:.6f} "
                                             f"(over {sum(s.max_abs is not None for s in report.steps)} steps)"])
    rows.append(["time to first token", f"{report.ttft_s * 1000:.2f} ms"])
    rows.append(["decode", f"{report.decode_tokens_per_s:.1f} tokens/s"])
    if report.reference_tokens_per_s:
        rows.append(["PyTorch generate" if who == "PyTorch" else "reference decode",
                     f"{report.reference_tokens_per_s:.1f} tokens/s"])
    out.show(out.table(f"Generated {len(report.tokens)} tokens with {report.model}", ["field", "value"], rows))
    if report.reference_tokens is not None:
        steps = [[str(s.step), str(s.token), str(s.reference_token),
                  "" if s.forced_token is None else f"{s.forced_token}{'' if s.agrees else ' x'}",
                  "-" if s.max_abs is None else f"{s.max_abs:.3g}", "-" if s.cosine is None else f"{s.cosine:.6f}"]
                 for s in report.steps]
        out.show(out.table("Per step (teacher-forced after a first difference: fed the reference's tokens)",
                           ["step", "token", who, "forced", "logits max abs", "cosine"], steps))


def register(app: typer.Typer) -> None:
    app.command("generate", epilog=EXAMPLES, rich_help_panel=PANEL_MODEL)(generate)
