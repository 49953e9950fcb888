"""Data-parallel training under torchrun (gloo, 2 local CPU processes) against one process."""

import os
import subprocess
import sys

import pytest
import torch

from cfctool import checkpoint

RUN = ["xor", "--train-size", "512", "--epochs", "2", "--hidden", "8", "--backbone-units", "8", "--threads", "1"]
TOLERANCE = 1e-5  # max |w_2proc - w_1proc| after 16 Adam steps: the gradients differ only in summation order

pytestmark = [pytest.mark.slow, pytest.mark.skipif(not torch.distributed.is_available() or not torch.distributed.is_gloo_available(),
                                reason="torch.distributed with gloo is not available in this torch build")]


def torchrun(*args, cwd, **kw):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                           *map(str, args)], capture_output=True, text=True, timeout=300, cwd=cwd, env=env, **kw)


def test_two_processes_train_the_same_weights_as_one(tmp_path):
    one = subprocess.run([sys.executable, "-m", "cfctool", "train", *RUN, "-q", "-o", "one.st"], cwd=tmp_path,
                         capture_output=True, text=True, timeout=300)
    assert one.returncode == 0, one.stderr
    (tmp_path / "two").mkdir()
    two = torchrun("-m", "cfctool", "train", *RUN, "-o", "two.st", cwd=tmp_path / "two")
    assert two.returncode == 0, two.stderr[-3000:]
    assert sorted(p.name for p in (tmp_path / "two").iterdir()) == ["two.st", "two.yaml"]  # one checkpoint
    assert two.stdout.count("two.st") == 1  # only rank 0 prints (and writes)
    a, b = checkpoint.load(tmp_path / "one.st"), checkpoint.load(tmp_path / "two" / "two.st")
    diff = max((a.tensors[k] - b.tensors[k]).abs().max().item() for k in a.tensors)
    assert diff <= TOLERANCE
    assert b.record["metrics"]["accuracy"] == a.record["metrics"]["accuracy"]
    entry = b.record["history"][-1]
    assert entry["world_size"] == 2 and a.record["history"][-1]["world_size"] == 1
    assert entry["config"]["train"]["batch_size"] == 64  # the global batch, as in the one-process run
    assert entry["seed"] == 0


def test_an_embedding_trains_the_same_with_sparse_gradients_across_ranks(tmp_path, data_dir):
    """Under torchrun on CPU an embedding's gradient is all-reduced sparse (the rows the batch
    used) and made dense before clipping and the optimiser: the weights are one process's."""
    run = ["imdb", "--max-samples", "256", "--vocab-size", "300", "--embedding-dim", "8", "--seq-len", "32",
           "--hidden", "8", "--backbone-units", "8", "--epochs", "1", "--batch-size", "64", "--threads", "1",
           "--optimizer", "sgd", "--lr", "0.5", "--data", str(data_dir), "-q"]  # sgd: a gradient off by a factor shows
    one = subprocess.run([sys.executable, "-m", "cfctool", "train", *run, "-o", "one.st"], cwd=tmp_path,
                         capture_output=True, text=True, timeout=300)
    assert one.returncode == 0, one.stderr
    two = torchrun("-m", "cfctool", "train", *run, "-o", "two.st", cwd=tmp_path)
    assert two.returncode == 0, two.stderr[-3000:]
    a, b = checkpoint.load(tmp_path / "one.st"), checkpoint.load(tmp_path / "two.st")
    moved = (a.tensors["embedding.weight"] - b.tensors["embedding.weight"]).abs().max().item()
    diff = max((a.tensors[k] - b.tensors[k]).abs().max().item() for k in a.tensors)
    assert diff <= TOLERANCE, diff
    assert moved <= TOLERANCE
    # quantization-aware training fake-quantizes the embedding: its gradient stays dense, and it runs
    qat = torchrun("-m", "cfctool", "quantize", "one.st", "--scheme", "qat", "--epochs", "1", "--threads", "1",
                   "--data", str(data_dir), "-q", "-o", "qat.st", cwd=tmp_path)
    assert qat.returncode == 0, qat.stderr[-3000:]
    # a gradient off by a factor would show: half the step (sgd: half the gradient) moves the embedding elsewhere
    half = subprocess.run([sys.executable, "-m", "cfctool", "train", *run, "--lr", "0.25", "-o", "half.st"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert half.returncode == 0, half.stderr
    c = checkpoint.load(tmp_path / "half.st")
    assert (a.tensors["embedding.weight"] - c.tensors["embedding.weight"]).abs().max().item() > 20 * TOLERANCE


def test_a_rank_failing_mid_run_fails_the_command_and_writes_nothing(tmp_path):
    """Rank 1's loss turns NaN at its third step (a diverging shard): it reports the error,
    torchrun stops rank 0 (waiting in the gradient all-reduce) and fails; nothing is written."""
    script = tmp_path / "failing_rank.py"
    script.write_text(
        "import os, sys\n"
        "import torch\n"
        "import cfctool.training.fit as ev  # the loss fit() reads\n"
        "if os.environ['RANK'] == '1':\n"
        "    calls, real = [0], ev.task_loss\n"
        "    def task_loss(*a, **k):\n"
        "        calls[0] += 1\n"
        "        value = real(*a, **k)\n"
        "        return value * float('nan') if calls[0] >= 3 else value\n"
        "    ev.task_loss = task_loss\n"
        "from cfctool.cli.app import main\n"
        "main(sys.argv[1:])\n")
    r = torchrun(script, "train", *RUN, "-o", "out.st", cwd=tmp_path)
    assert r.returncode != 0
    assert "error: loss became nan at epoch 1, step 3 on rank 1" in r.stderr
    assert not list(tmp_path.glob("out*"))


@pytest.mark.parametrize("command", [
    ["prune", "IN", "--global", "--ratio", "0.5", "--finetune", "1"],
    ["distill", "IN", "--student", "cfc-ncp", "--hidden", "8", "--epochs", "1"],
    ["quantize", "IN", "--scheme", "qat"],
])
def test_every_training_command_runs_data_parallel(tmp_path, trained_xor, command):
    """prune --finetune (masks held through DDP), distill and QAT train through fit() under torchrun."""
    args = [str(trained_xor["cfc"]) if a == "IN" else a for a in command]
    r = torchrun("-m", "cfctool", *args, "--threads", "1", "-q", "-o", "out.st", cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    out = checkpoint.load(tmp_path / "out.st")
    assert out.record["history"][-1]["world_size"] == 2 and out.record["history"][-1]["command"] == command[0]
    if command[0] == "prune":
        tensors = out.record["compression"]["pruning"]["tensors"]
        zeros = sum(int((out.tensors[n] == 0).sum()) for n in tensors)
        removed = sum(t["removed"] for t in tensors.values())
        assert removed > 0 and zeros >= removed  # the masks held through the data-parallel fine-tuning


def test_every_rank_leaves_the_process_group_before_interpreter_teardown(tmp_path):
    """Left to teardown, gloo can abort a finished rank (SIGABRT); join() registers leave() at exit."""
    script = tmp_path / "leaves.py"
    script.write_text(
        "import atexit, os\n"
        "import torch.distributed as dist\n"
        "def say(line): os.write(1, (line + '\\n').encode())  # one write: the two ranks' lines never interleave\n"
        "atexit.register(lambda: say(f'initialized at exit: {dist.is_initialized()}'))  # runs last\n"
        "from cfctool.training import distributed\n"
        "world = distributed.join()\n"
        "say(f'rank {world.rank} of {world.size}')\n")
    r = torchrun(script, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.count("initialized at exit: False") == 2, r.stdout
    assert "rank 1 of 2" in r.stdout


def test_streamed_training_reads_a_disjoint_share_per_rank(tmp_path):
    """--stream under torchrun: each rank reads its own contiguous row groups (recorded here
    by wrapping the function that picks them), together all of them, and the run finishes
    with one checkpoint."""
    pa = pytest.importorskip("pyarrow", reason="--stream reads Parquet with pyarrow")
    import numpy as np
    import pyarrow.parquet as pq

    rng = np.random.default_rng(0)
    lengths = rng.integers(3, 9, size=120)
    ids = np.repeat(np.arange(120), lengths)
    drift = rng.normal(size=120)
    pq.write_table(pa.table({"id": ids, "a": rng.normal(size=len(ids)) + np.repeat(drift, lengths),
                             "y": np.repeat((drift > 0).astype(np.int64), lengths)}), tmp_path / "d.parquet",
                   row_group_size=50)
    script = tmp_path / "record_shares.py"
    script.write_text(
        "import json, os, sys\n"
        "from cfctool.data import stream\n"
        "real = stream.groups_of\n"
        "def groups_of(path, world):\n"
        "    got = real(path, world)\n"
        "    with open(f'shares-{os.environ[\"RANK\"]}.jsonl', 'a') as fh:\n"
        "        fh.write(json.dumps(got) + '\\n')\n"
        "    return got\n"
        "stream.groups_of = groups_of\n"
        "from cfctool.cli.app import main\n"
        "main(sys.argv[1:])\n")
    r = torchrun(script, "train", "own", "--data-file", "d.parquet", "--stream", "--target-column", "y",
                 "--epochs", "2", "--hidden", "8", "--batch-size", "16", "--threads", "1", "-o", "m.st", cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    import json

    shares = [{tuple(json.loads(line)) for line in (tmp_path / f"shares-{rank}.jsonl").read_text().splitlines()}
              for rank in (0, 1)]
    assert all(len(s) == 1 for s in shares)  # the same share every epoch
    (a0, e0, total), (a1, e1, _) = shares[0].pop(), shares[1].pop()
    assert (a0, e0, a1, e1) == (0, total // 2, total // 2, total) and total == pq.ParquetFile(tmp_path / "d.parquet"
                                                                                             ).num_row_groups
    assert checkpoint.load(tmp_path / "m.st").record["history"][-1]["world_size"] == 2
