"""The compression driver: every method (quantize, prune, reduce, ...) runs through it.

A method is a config class and a module (`cfctool.ops.methods.METHODS`); the driver owns what
they share, so a method's module holds only what is its own:

- `Compression.of(cfg)`: the method is found by the config's type and the settings are
  validated, once;
- `.on(ckpt)`: the method's `check(ckpt, cfg)` (what the settings cannot be for this
  checkpoint), before any data is read; `--max-drop-with`'s checkpoints are read and
  checked too (the same recipe, other seeds);
- `.run(...)`: with `--max-drop` a budget search along the method's `AXIS`
  (`cfctool.ops.budget`), else one `apply`: the method's `transform(ckpt, cfg, ctx)` under
  the thread setting, its record sections merged into `compression`, one history entry.

The CLI calls the three steps apart (output locations are checked between them); the
Python API (`cfctool.quantize(ckpt, cfg)`, `cfctool.ops.quantize.quantize`) is `compress`.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from cfctool import checkpoint
from cfctool.checkpoint import Checkpoint, history_entry
from cfctool.errors import CfcError, ConfigError
from cfctool.escape import terminal
from cfctool.ops import budget
from cfctool.ops.methods import METHODS, Method, method_for
from cfctool.runtime import threads as thread_scope


@dataclass(frozen=True)
class Context:
    """What a transform may use besides the checkpoint and its settings."""

    data_dir: Any = None
    say: Callable[[str], None] = lambda message: None
    progress: Any = None


@dataclass
class Result:
    """A transform's output: the new checkpoint and the record sections it writes under
    `compression` (its method's section first; e.g. quantize also writes `embedding_folded`)."""

    ckpt: Checkpoint
    sections: dict[str, dict[str, Any]] = field(default_factory=dict)


@dataclass(frozen=True)
class Compression:
    """A method, its validated settings and (after `on`) the checkpoint they were checked against."""

    method: Method
    cfg: Any
    ckpt: Checkpoint | None = None
    others: tuple[Checkpoint, ...] = ()  # --max-drop-with: the recipe's other seeds

    @classmethod
    def of(cls, cfg: Any, method: str | None = None) -> Compression:
        """The method of `cfg` (which must be `method`'s, where given), its settings validated."""
        found = method_for(cfg)
        if method is not None and found.name != method:
            raise ConfigError(
                f"{method} takes its own settings ({METHODS[method].config.__name__}), not {type(cfg).__name__}"
            )
        cfg.validate()
        return cls(found, cfg)

    def on(self, ckpt: Checkpoint) -> Compression:
        self.method.hooks().check(ckpt, self.cfg)
        return dataclasses.replace(self, ckpt=ckpt, others=self._other_seeds(ckpt))

    def _other_seeds(self, ckpt: Checkpoint) -> tuple[Checkpoint, ...]:
        """--max-drop-with's checkpoints, each checked as the input is and proved to be the
        input's recipe with other seeds (`checkpoint.recipe_of`, as `report` groups them)."""
        recipe, seeds = checkpoint.recipe_of(ckpt.record)
        seen = {tuple(seeds): ckpt.source or "the input"}
        others = []
        for path in getattr(self.cfg, "max_drop_with", None) or []:
            if path == "-":
                raise ConfigError("--max-drop-with reads checkpoint files; standard input is the input's")
            other = checkpoint.load(path)
            self.method.hooks().check(other, self.cfg)
            other_recipe, other_seeds = checkpoint.recipe_of(other.record)
            if other_recipe != recipe:
                raise ConfigError(
                    f"--max-drop-with {path}: not the input's recipe with another seed (their histories "
                    "differ beyond seeds and where they ran); give checkpoints trained as the input was, "
                    "with another --seed"
                )
            if tuple(other_seeds) in seen:
                raise ConfigError(
                    f"--max-drop-with {path}: the same seeds ({terminal(', '.join(map(str, other_seeds)), 80)}) as "
                    f"{seen[tuple(other_seeds)]}; each model must come from other seeds"
                )
            seen[tuple(other_seeds)] = path
            others.append(other)
        return tuple(others)

    def run(self, *, data_dir=None, argv: list[str] | None = None, notify=None, progress=None) -> Checkpoint:
        if self.ckpt is None:
            raise CfcError("a compression runs on a checkpoint: call .on(ckpt) first")
        say = notify or (lambda message: None)
        if getattr(self.cfg, "max_drop", None) is None:  # a method without a budget has no such setting
            return self.apply(self.cfg, Context(data_dir, say, progress), argv)
        quiet = Context(data_dir, lambda message: None, progress)  # the search speaks for its candidates

        def make(setting: dict[str, Any], model: Checkpoint) -> Checkpoint:
            job = dataclasses.replace(self, ckpt=model)
            return job.apply(dataclasses.replace(self.cfg, **setting, max_drop=None), quiet, argv)

        assert self.ckpt is not None  # checked above
        hooks = self.method.hooks()
        return budget.search(self.ckpt, self.cfg, hooks.AXIS, self.method.section, make, data_dir, say, self.others)

    def apply(self, cfg: Any, ctx: Context, argv: list[str] | None) -> Checkpoint:
        """One compression of the checkpoint at `cfg` (a budget's candidates come through here)."""
        assert self.ckpt is not None  # set by `on`
        ckpt = self.ckpt
        started = time.perf_counter()
        with thread_scope(getattr(cfg, "threads", None)):
            result = self.method.hooks().transform(ckpt, cfg, ctx)
        compression = {**(ckpt.record.get("compression") or {}), **result.sections}
        out = result.ckpt.derive(compression=compression, metrics={})
        wall = time.perf_counter() - started
        entry = history_entry(
            self.method.name,
            argv,
            cfg.to_dict(),
            inputs=[ckpt.source] if ckpt.source else [],
            seed=getattr(cfg, "seed", None),
            wall_time_s=wall,
        )
        return out.with_history(entry)


def compress(
    ckpt: Checkpoint,
    cfg: Any,
    *,
    method: str | None = None,
    data_dir=None,
    argv: list[str] | None = None,
    notify=None,
    progress=None,
) -> Checkpoint:
    """The compression `cfg` describes (its type names the method), applied to `ckpt`."""
    job = Compression.of(cfg, method).on(ckpt)
    return job.run(data_dir=data_dir, argv=argv, notify=notify, progress=progress)
