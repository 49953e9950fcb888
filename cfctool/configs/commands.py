"""Settings of the commands that read a checkpoint without compressing it: eval, bench,
export, info, report and import ncps. As every command's, their flags come from these fields
(help text, default, choices from `Literal` types), and `--config FILE` / `--print-config`
read and write them."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal

from cfctool.configs.base import _help, check_literals, literal_choices
from cfctool.engine_registry import listing, runnable
from cfctool.errors import ConfigError
from cfctool.families.cfc import ACTIVATIONS, CFC_MODES


@dataclass
class EvalConfig:
    """Settings of `cfctool eval`."""

    split: Literal["test", "val", "train"] = _help("Split to evaluate.", "test")
    batch_size: int = _help("Evaluation batch size.", 512)
    max_samples: int | None = _help("Evaluate a seeded random subset of N samples.")
    threads: int | None = _help("CPU threads (default: torch's choice).")
    engine: str = _help(
        "auto (the fastest exact engine for the checkpoint) or an engine by name: " + listing(runnable()) + ".", "auto"
    )

    def validate(self) -> None:
        check_literals(self)  # (evaluate checks the bounds, with its own context)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class BenchConfig:
    """Settings of `cfctool bench` (bench checks their bounds itself, before any timing)."""

    cpu: bool = _help("Pin the CPU even where a GPU exists (the default).", False, flags="--cpu")
    device: Literal["cpu", "cuda"] = _help("cpu or cuda (torch engine); --cpu overrides.", "cpu")
    engine: str = _help(
        "auto (the fastest exact engine for the checkpoint, the one eval runs; 'torch' is an older name of it), "
        "all (auto, loop and onnxruntime), or an engine by name: " + listing() + ".",
        "auto",
    )
    against: str | None = _help("A base checkpoint, interleaved in the same run; reports ratios.")
    threads: int | None = _help("CPU threads (default: torch's choice).")
    batch_size: int = _help("Batch size.", 128)
    seq_len: int | None = _help("Time synthetic inputs of this length instead of the split.")
    batches: int | None = _help("Time N batches of a seeded random subset of the split.")
    repeats: int = _help("Timed passes over the workload (medians are reported).", 5)
    warmup: int = _help("Untimed warm-up batches per model.", 1)
    split: Literal["test", "train"] = _help("Split to time.", "test")

    def validate(self) -> None:
        pass  # bench checks every bound and choice itself, with the timing's context

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class ExportConfig:
    """Settings of `cfctool export`."""

    format: Literal["onnx", "c", "ncps"] = _help(
        "onnx (an ONNX graph), c (C99 source for any CPU or microcontroller) or ncps (the weights in ncps's layout).",
        "onnx",
    )
    name: str | None = _help("--format c: the C name of the model (default: the checkpoint's file name).")
    token_table: Literal["auto", "folded", "embedding"] | None = _help(
        "--format c, token models: how token ids enter. folded: one float row per token (a lookup, the fastest; "
        "vocabulary x first width floats); embedding: the embedding rows (int8 where quantized, only the non-zeros "
        "where pruned), projected at every step (the smallest flash); auto (default): embedding when the embedding "
        "is at least half zeros, else folded."
    )
    sparse: Literal["auto", "never", "always"] | None = _help(
        "--format c: how each weight product runs. auto (default): only its non-zeros where the product is sparse "
        "enough to run faster so (measured per form), else dense; always; never."
    )
    row_align: int | None = _help(
        "--format c, quantized models: pad each integer row to a multiple of this many bytes (default 16: whole "
        "vector registers on a desktop CPU; 4 suits a Cortex-M4's 32-bit multiply-adds)."
    )
    seq_len: int | None = _help("Length of the verification inputs and of an unrolled graph (default: the task's).")

    def validate(self) -> None:
        choices = literal_choices(ExportConfig)
        if self.format not in choices["format"]:
            raise ConfigError(f"--format must be one of {', '.join(choices['format'])} (got '{self.format}')")
        if self.row_align is not None and self.format != "c":
            raise ConfigError("--row-align applies to --format c")
        if self.row_align is not None and not 1 <= self.row_align <= 4096:
            raise ConfigError(f"--row-align must be from 1 to 4096 (got {self.row_align})")
        for name in ("name", "token_table", "sparse"):
            if getattr(self, name) is not None and self.format != "c":
                raise ConfigError(f"--{name.replace('_', '-')} applies to --format c")
        check_literals(self)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class InfoConfig:
    """Settings of `cfctool info`: none beyond its input and --json (kept, so that every
    command takes --config and --print-config alike)."""

    def validate(self) -> None:
        pass

    def to_dict(self) -> dict[str, Any]:
        return {}


@dataclass
class ReportConfig:
    """Settings of `cfctool report`."""

    plot: str | None = _help(
        "Also draw the task's metric vs file size and vs CPU time (.png/.pdf/.svg; needs matplotlib)."
    )

    def validate(self) -> None:
        pass

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class ImportNcpsConfig:
    """Settings of `cfctool import ncps`: what the weight file cannot say."""

    dataset: str | None = _help("The data set the model reads (its task: input and output sizes, vocabulary).")
    readout: str | None = _help(
        "Key prefix of the nn.Linear after the ncps module (e.g. 'fc'); without it the module's outputs are the logits."
    )
    embedding: str | None = _help("Key prefix of the nn.Embedding before it (token data sets).")
    mode: str | None = _help("CfC mode (default: pure when the weights have w_tau, else default).")
    activation: str = _help(
        "The CfC backbone's activation (ncps's `activation`). One of: " + ", ".join(ACTIVATIONS) + ".",
        "lecun_tanh",
    )
    backbone_dropout: float | None = _help("ncps's backbone_dropout (needed when the backbone has Dropout layers).")
    ode_unfolds: int = _help("LTC: ncps's ode_unfolds.", 6)
    ltc_constraints: Literal["implicit", "explicit"] = _help(
        "LTC: implicit (ncps LTC's default: softplus) or explicit (implicit_param_constraints=False).", "implicit"
    )
    wiring_seed: int | None = _help("Wired CfC: the AutoNCP seed, checked against the stored masks (recorded).")
    sparsity: float | None = _help("Wired CfC: AutoNCP's sparsity_level (recorded; default: measured from the masks).")
    data_dir: str | None = _help("Data directory (default: $CFCTOOL_DATA).")

    def validate(self) -> None:
        if self.dataset is None:
            raise ConfigError("--dataset is required: the data set the model reads")
        if self.mode is not None and self.mode not in CFC_MODES:
            raise ConfigError(f"--mode must be one of {', '.join(CFC_MODES)} (got '{self.mode}')")
        if self.activation not in ACTIVATIONS:
            raise ConfigError(f"--activation must be one of {', '.join(ACTIVATIONS)} (got '{self.activation}')")
        if self.ltc_constraints not in ("implicit", "explicit"):
            raise ConfigError(f"--ltc-constraints must be implicit or explicit (got '{self.ltc_constraints}')")
        if self.backbone_dropout is not None and not 0 <= self.backbone_dropout < 1:
            raise ConfigError(f"--backbone-dropout must be in [0, 1) (got {self.backbone_dropout})")
        if not 1 <= self.ode_unfolds <= 1000:
            raise ConfigError(f"--ode-unfolds must be from 1 to 1000 (got {self.ode_unfolds})")
        if self.sparsity is not None and not 0 < self.sparsity < 1:
            raise ConfigError(f"--sparsity must be in (0, 1) (got {self.sparsity})")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)
