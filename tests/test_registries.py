"""The extension points are registries: a new compression method, a new inference engine
(and, in test_core, a new model family) is its module plus one registry line, and every
command, report and the Python API pick it up."""

import json
import textwrap

import pytest
import torch
from helpers import tiny_run

import cfctool
from cfctool import checkpoint
from cfctool.checkpoint import load, save
from cfctool.ops.train import train

# A whole compression method in one module: its config, its checks, its transform and its report
# hooks; the driver (cfctool.ops.compress) does the rest: validation, threads, record, history.
SCALE_METHOD = textwrap.dedent('''
    """Scale the readout's weights by a factor (a toy method for the registry test)."""
    from dataclasses import asdict, dataclass, field

    from cfctool.errors import CfcError, ConfigError
    from cfctool.ops.compress import Result


    @dataclass
    class ScaleConfig:
        factor: float | None = field(default=None, metadata={"help": "What the readout is multiplied by."})

        def validate(self):
            if self.factor is None or self.factor <= 0:
                raise ConfigError("--factor must be > 0")

        def to_dict(self):
            return asdict(self)


    def check(ckpt, cfg):
        if "head.weight" not in ckpt.tensors:
            raise CfcError("this model has no readout to scale")


    def transform(ckpt, cfg, ctx):
        tensors = {**ckpt.tensors, "head.weight": ckpt.tensors["head.weight"] * cfg.factor}
        return Result(ckpt.derive(tensors=tensors), {"scaling": {"factor": cfg.factor}})


    def label(c):
        return f"scale x{c.get('factor')}"


    def describe(compression):
        return {"scaling": f"readout scaled by {compression['scaling']['factor']}"}


    def result_line(out):
        return "readout scaled"
''')


@pytest.fixture
def scale_method(tmp_path, monkeypatch):
    """The toy method's module on sys.path, and its one registry line."""
    from cfctool.cli import app as app_module
    from cfctool.ops.methods import METHODS, Method

    (tmp_path / "toy_scale.py").write_text(SCALE_METHOD)
    monkeypatch.syspath_prepend(str(tmp_path))
    import toy_scale

    monkeypatch.setitem(METHODS, "scale", Method("scale", toy_scale.ScaleConfig, "toy_scale", "scaling",
                                                 "Scaling settings", "Scale the readout by a factor.",
                                                 "Multiplies the readout's weights by --factor.",
                                                 "cfctool scale model.st --factor 2 -o scaled.st"))
    monkeypatch.setattr(app_module, "app", app_module.build_app())  # the CLI as it is built at start-up
    return toy_scale


def test_a_new_compression_method_is_one_module_and_one_registry_line(scale_method, trained_xor, tmp_path, cli):
    ckpt = checkpoint.load(trained_xor["cfc"])
    # the Python API
    out = cfctool.scale(ckpt, scale_method.ScaleConfig(factor=0.5))
    assert torch.equal(out.tensors["head.weight"], ckpt.tensors["head.weight"] * 0.5)
    # the CLI: the command, its flags from the config, its validation and its result line
    assert "Scale the readout by a factor." in cli("--help").out
    assert "--factor" in cli("scale", "--help").out
    bad = cli("scale", trained_xor["cfc"], "--factor", "-1", "-o", tmp_path / "bad.st")
    assert bad.code == 2 and "--factor must be > 0" in bad.err and not (tmp_path / "bad.st").exists()
    r = cli("scale", trained_xor["cfc"], "--factor", "0.25", "-o", tmp_path / "s.st")
    assert r.code == 0, r.err
    assert r.out.strip() == str(tmp_path / "s.st") and "readout scaled" in r.err
    back = checkpoint.load(tmp_path / "s.st")
    assert torch.equal(back.tensors["head.weight"], ckpt.tensors["head.weight"] * 0.25)
    # the driver wrote its record section and one history entry
    assert back.record["compression"]["scaling"] == {"factor": 0.25}
    assert back.record["history"][-1]["command"] == "scale" and back.record["history"][-1]["config"]["factor"] == 0.25
    # info and report read its hooks
    assert "readout scaled by 0.25" in cli("info", tmp_path / "s.st").out
    rows = json.loads(cli("report", tmp_path / "s.st", "--json").out)
    assert rows[0]["history"].endswith("-> scale x0.25")


def test_the_driver_validates_settings_once_and_budgets_turn_the_method_axis(trained_xor, tmp_path, monkeypatch, cli):
    from cfctool.configs import PruneConfig
    from cfctool.errors import ConfigError
    from cfctool.ops.compress import compress

    calls = []
    original = PruneConfig.validate
    monkeypatch.setattr(PruneConfig, "validate", lambda self: (calls.append(1), original(self))[1])
    r = cli("prune", trained_xor["cfc"], "--ratio", "0.5", "-o", tmp_path / "p.st")
    assert r.code == 0, r.err
    assert len(calls) == 1
    calls.clear()
    r = cli("prune", trained_xor["cfc"], "--ratio", "0.9", "--max-drop", "50", "-o", tmp_path / "b.st")
    assert r.code == 0, r.err
    assert len(calls) == 1  # the candidates are not validated again
    budget = checkpoint.load(tmp_path / "b.st").record["compression"]["pruning"]["budget"]
    assert budget["chosen"] == {"ratio": 0.9} and [t["setting"] for t in budget["candidates"]] == [{"ratio": 0.9}]
    # the config's type names the method; a method's own entry point refuses another's settings
    ckpt = checkpoint.load(trained_xor["cfc"])
    assert "pruning" in compress(ckpt, PruneConfig(ratio=0.5)).record["compression"]
    with pytest.raises(ConfigError, match="quantize takes its own settings"):
        cfctool.quantize(ckpt, PruneConfig(ratio=0.5))
    with pytest.raises(ConfigError, match="no compression method's settings"):
        compress(ckpt, {"ratio": 0.5})


def test_the_method_registry_serves_the_existing_commands():
    from cfctool.ops.methods import METHODS

    assert list(METHODS) == ["quantize", "prune", "reduce"]
    for method in METHODS.values():
        hooks = method.hooks()
        assert callable(hooks.check) and callable(hooks.transform) and callable(hooks.label)
        assert hasattr(hooks.AXIS, "search")  # what --max-drop turns
        assert getattr(cfctool, method.name).keywords == {"method": method.name}  # the driver, for this method


# A whole inference engine in one module: which models it runs and how it builds its module.
DOUBLE_ENGINE = textwrap.dedent('''
    """Run a CfC in float64 (a toy engine for the registry test)."""
    import torch
    from torch import nn

    from cfctool.models.cfc import CfC


    class Double(nn.Module):
        def __init__(self, model):
            super().__init__()
            self.model = model.double().eval()

        def forward(self, x, dt=None, mask=None):
            as64 = lambda t: t.double() if t is not None and t.is_floating_point() else t  # noqa: E731
            return self.model(as64(x), as64(dt), mask).float()


    def supports(ckpt, model):
        return isinstance(getattr(model, "rnn", None), CfC)


    def build(ckpt, model):
        return Double(model)
''')


@pytest.fixture
def double_engine(tmp_path, monkeypatch):
    """The toy engine's module on sys.path, and its one registry line (first: preferred)."""
    from cfctool import engine_registry
    from cfctool.engine_registry import EngineEntry

    (tmp_path / "toy_double.py").write_text(DOUBLE_ENGINE)
    monkeypatch.syspath_prepend(str(tmp_path))
    import toy_double

    monkeypatch.setattr(engine_registry, "ENGINES", [EngineEntry("float64", toy_double.supports, toy_double.build,
                                                             "a CfC run in float64"), *engine_registry.ENGINES])
    return toy_double


def test_a_new_engine_is_one_module_and_one_registry_line(double_engine, trained_xor, cli):
    from cfctool.ops.bench import bench
    from cfctool.ops.evaluate import evaluate

    ckpt = checkpoint.load(trained_xor["cfc"])
    before = ckpt.record["metrics"]["accuracy"]
    report = evaluate(ckpt)  # eval chooses it (first in the registry) and names it
    assert report["engine"] == "float64" and report["accuracy"] == pytest.approx(before)
    assert evaluate(checkpoint.load(trained_xor["ltc"]))["engine"] == "loop"  # what it does not support
    timing = bench(ckpt, engine="float64", repeats=1, warmup=0)
    assert timing["results"][0]["engine"] == "float64"
    r = cli("bench", trained_xor["cfc"], "--engine", "folded", "--repeats", "1", "--json")
    assert r.code == 0 and json.loads(r.out)["results"][0]["engine"] == "folded"  # any engine by name
    r = cli("bench", trained_xor["ltc"], "--engine", "float64", "--repeats", "1")
    assert r.code == 2 and "the float64 engine does not run this ltc checkpoint" in r.err
    r = cli("bench", trained_xor["cfc"], "--engine", "tensorrt")
    assert r.code == 2 and "float64" in r.err and "folded-int8" in r.err  # the one vocabulary, the new name in it


def test_bench_keeps_torch_as_the_older_name_of_auto(trained_xor):
    from cfctool.ops.bench import bench

    ckpt = checkpoint.load(trained_xor["cfc"])
    old, new = (bench(ckpt, engine=e, repeats=1, warmup=0)["results"][0] for e in ("torch", "auto"))
    assert old["engine"] == new["engine"] == "folded"


def test_folded_engines_follow_the_step_protocol(trained_xor, tmp_path):
    """The protocol the ONNX Scan export (and a generated-code engine) relies on."""
    from cfctool.configs import QuantizeConfig
    from cfctool.engines import FoldedEngine, FoldedStep, choose
    from cfctool.families.build import build_model, model_from_checkpoint
    from cfctool.ops.quantize import quantize

    ckpt = checkpoint.load(trained_xor["cfc"])
    int8 = quantize(ckpt, QuantizeConfig(calib=16))
    ode = build_model({"name": "ode-rnn", "hidden": 6, "gamma": 0.05, "solver": "euler", "ode_dt": 0.1},
                      ckpt.task)
    chosen = {"folded": choose(ckpt, model_from_checkpoint(ckpt)),
              "folded-int8": choose(int8, model_from_checkpoint(int8)),
              "folded-ode": __import__("cfctool.engines", fromlist=["fastest"]).fastest(ode)}
    assert chosen["folded-int8"].name == "folded-int8" and chosen["folded-int8"].entry.integer
    modules = {name: engine.module for name, engine in chosen.items()}
    for name, engine in chosen.items():  # the capability the export asks for, not the name
        assert engine.entry.folded, name
    for name, module in modules.items():
        assert isinstance(module, FoldedEngine), name
        step = module.folded(1.0)
        assert isinstance(step, FoldedStep), name
        x = torch.rand(3, 5, ckpt.task["input"]["size"])
        u, dts, masks = step.time_major(x, None, None)
        ys = step.initial(u)
        for t in range(u.shape[0]):
            ys = step.step(ys, u[t], None, None)
        with torch.no_grad():
            assert torch.allclose(step.readout(ys[-1]), module(x), atol=1e-5), name


# A whole model family: a core module and its record (the smallest one cfctool can run).
class ToyCore(torch.nn.Module):
    """A plain tanh RNN: the smallest core the rest of cfctool can train, save and evaluate."""

    def __init__(self, features, hidden):
        super().__init__()
        self.cell = torch.nn.Linear(features + hidden, hidden)
        self.input_size, self.state_size, self.output_size = features, hidden, hidden

    def forward(self, x, dt=None, mask=None, return_sequences=False, trace=None):
        h = x.new_zeros(x.shape[0], self.state_size)
        for t in range(x.shape[1]):
            new = torch.tanh(self.cell(torch.cat([x[:, t], h], 1)))
            h = new if mask is None else torch.where(mask[:, t : t + 1], new, h)
        return None, h


def _toy_family():
    from cfctool.families.base import HIDDEN, Family, standard_counts

    return Family(
        name="toy-rnn", summary="a plain tanh RNN", settings=(HIDDEN,),
        record=lambda values, task: {"name": "toy-rnn", "hidden": values["hidden"]},
        build=lambda arch, features: ToyCore(features, arch["hidden"]),
        macs_per_step=lambda core: core.cell.weight.numel(), counts=standard_counts)


def test_a_new_family_is_one_module_and_one_registry_line(monkeypatch, tmp_path):
    from cfctool.families import FAMILIES
    from cfctool.ops.bench import bench
    from cfctool.ops.evaluate import evaluate

    monkeypatch.setitem(FAMILIES, "toy-rnn", _toy_family())  # the registry line
    ckpt = train(tiny_run("toy-rnn", epochs=1))
    save(ckpt, tmp_path / "toy.st")
    back = load(tmp_path / "toy.st")
    report = evaluate(back)
    assert report["engine"] == "loop" and report["accuracy"] == ckpt.record["metrics"]["accuracy"]
    assert report["params"] == 8 * (1 + 8) + 8 + 8 * 2 + 2
    timing = bench(back, repeats=1, warmup=0)
    assert timing["results"][0]["macs_per_sequence"] == 6 * 8 * 9 + 2 * 8


# A whole data set: its own setting, its loader, its split reader (torch-free to import).
TOY_DATA = textwrap.dedent('''
    """Sign of the sum of a random walk (a toy data set for the registry test)."""
    from cfctool.data.base import Dataset, Split
    from cfctool.settings import Setting

    SETTINGS = (Setting("walk_length", int, 7, "toy-walk: steps per walk.", low=2),)


    def task_record(length):
        return {"dataset": "toy-walk", "input": {"kind": "features", "size": 1},
                "output": {"kind": "classification", "size": 2, "per_step": False},
                "preprocessing": {"walk_length": length}}


    def _split(length, n, seed):
        import torch

        x = torch.randn(n, length, 1, generator=torch.Generator().manual_seed(seed))
        return Split(x, (x.sum((1, 2)) > 0).long())


    def load(cfg):
        task = task_record(cfg.walk_length)
        return Dataset(task=task, splits={"train": _split(cfg.walk_length, 256, 0), "val": _split(cfg.walk_length, 64, 1),
                                          "test": _split(cfg.walk_length, 64, 2)})


    def load_split(task, split, data_dir=None, task_tensors=None):
        return _split(task["preprocessing"]["walk_length"], 64, {"train": 0, "val": 1, "test": 2}[split])
''')


def test_a_new_data_set_is_one_module_with_its_own_settings_and_one_registry_line(tmp_path, monkeypatch, cli):
    import sys

    from cfctool import configs
    from cfctool.data import names
    from cfctool.errors import ConfigError
    from cfctool.ops.evaluate import evaluate

    (tmp_path / "toy_walk.py").write_text(TOY_DATA)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(names.MODULES, "toy-walk", "toy_walk")  # the registry line
    monkeypatch.setattr(configs.run, "DataConfig", configs.run._data_config_class())  # as built at start-up
    assert "torch" not in sys.modules["toy_walk"].__dict__  # its settings are read without torch
    run = configs.resolve("toy-walk", "cfc", overrides={"walk_length": 5, "epochs": 2, "hidden": 8, "threads": 1})
    assert run.data.walk_length == 5
    ckpt = train(run)
    assert ckpt.task["preprocessing"] == {"walk_length": 5}
    assert evaluate(ckpt)["accuracy"] == ckpt.record["metrics"]["accuracy"] > 0.6  # eval re-reads its test split
    with pytest.raises(ConfigError, match="walk_length must be >= 2"):
        configs.resolve("toy-walk", "cfc", overrides={"walk_length": 1})


def test_every_registered_engine_is_named_in_the_engine_help(cli):
    """`--engine`'s help and choices are built from the registry itself, which is torch-free."""
    from cfctool import engine_registry

    bench_help = " ".join(cli("bench", "--help").out.replace("│", " ").split())
    eval_help = " ".join(cli("eval", "--help").out.replace("│", " ").split())
    for e in engine_registry.ENGINES:
        if e.help:
            assert f"{e.name}: {' '.join(e.help.split())[:30]}" in bench_help, e.name
    assert "onnxruntime" not in eval_help and "c: generated C99" in eval_help
    assert engine_registry.runnable() == ("folded-int8", "folded", "loop", "c")  # in_process, in order


# A whole codec: float16 storage of float32 weights (lossy, not integer): three functions and a line.
FP16_CODEC = textwrap.dedent('''
    """Store a float32 tensor as float16 values (a toy codec for the registry test)."""
    import torch

    from cfctool.encodings import Codec


    def encode(t, spec):
        return {"values": t.reshape(-1).to(torch.float16)}, spec


    def parts(spec):
        return {"values": torch.float16}


    def decode(name, spec, parts, bad):
        values = parts["values"]
        if values.numel() != torch.Size(spec["shape"]).numel():
            raise bad(f"'{name}.values' holds {values.numel()} values for the shape {spec['shape']}")
        return values.float().reshape(spec["shape"])


    CODEC = Codec("fp16", encode, parts, decode, exact=False)
''')


def test_a_new_codec_is_its_functions_and_one_registry_line(tmp_path, monkeypatch, trained_xor, cli):
    from cfctool import encodings

    (tmp_path / "toy_fp16.py").write_text(FP16_CODEC)
    monkeypatch.syspath_prepend(str(tmp_path))
    import toy_fp16

    monkeypatch.setitem(encodings.CODECS, "fp16", toy_fp16.CODEC)  # the registry line
    ckpt = checkpoint.load(trained_xor["cfc"])
    name = "head.weight"
    half = ckpt.encode({name: {"codec": "fp16"}})
    save(half, tmp_path / "h.st")
    back = load(tmp_path / "h.st")  # the loader checks the parts the codec declares, then decodes
    assert back.encodings[name]["codec"] == "fp16"
    assert torch.equal(back.tensors[name], ckpt.tensors[name].half().float())
    assert "fp16" in cli("info", tmp_path / "h.st").out
    # a lossy codec no engine keeps: eval runs the decoded weights on the loop and says so
    r = cli("eval", tmp_path / "h.st", "--json")
    assert r.code == 0, r.err
    report = json.loads(r.out)
    assert report["engine"] == "loop" and "simulated" in report["engine_note"]
    # not an integer codec: the integer engines do not take it
    assert "fp16" not in encodings.INTEGER_CODECS and encodings.integer_codes(back.encodings[name], {}) is None
    # a malformed file is refused by the codec's own check
    bad = dict(back.parts[name])
    bad["values"] = bad["values"][:-1]
    with pytest.raises(checkpoint.CheckpointError, match="holds"):
        encodings.decode(name, back.encodings[name], bad)
