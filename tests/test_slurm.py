"""The Makefile pipelines and a data-parallel training on a real Slurm: a one-node cluster of
Debian's slurm-wlm and munge (slurmctld, slurmd and munged on this machine, in a temporary
directory, on free ports), started for this module and stopped after it. Without Slurm's
daemons, or where they cannot start, the tests skip and say why."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from cfctool import checkpoint

ROOT = Path(__file__).resolve().parents[1]
DAEMONS = ("munged", "slurmctld", "slurmd", "srun", "sinfo")

pytestmark = [pytest.mark.slow, pytest.mark.slurm]  # `make test-slurm` (CI runs it after the suite)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _which(name: str) -> str | None:
    return shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin")


def _stop(pidfile: Path) -> None:
    try:
        pid = int(pidfile.read_text().split()[0])
        os.kill(pid, signal.SIGTERM)
    except (OSError, ValueError, IndexError):
        return
    for _ in range(50):  # up to 5 s for it to go
        try:
            os.kill(pid, 0)
        except OSError:
            return
        time.sleep(0.1)
    try:
        os.kill(pid, signal.SIGKILL)
    except OSError:
        pass


@pytest.fixture(scope="module")
def slurm(tmp_path_factory):
    """SLURM_CONF and PATH for a running one-node cluster (2 CPUs' worth of this machine)."""
    missing = [d for d in DAEMONS if _which(d) is None]
    if missing:
        pytest.skip(f"Slurm is not installed ({', '.join(missing)} missing): apt-get install slurmd slurmctld "
                    "slurm-client munge (.ci/run does)")
    if os.geteuid() != 0:
        pytest.skip("slurmd runs jobs as their user and must start as root; this test runs as another user")
    d = tmp_path_factory.mktemp("slurm")
    for sub in ("state", "spool", "log", "munge"):
        (d / sub).mkdir()
    (d / "munge").chmod(0o700)
    key = d / "munge" / "munge.key"
    key.write_bytes(os.urandom(1024))
    key.chmod(0o400)
    host = socket.gethostname().split(".")[0]
    conf = d / "slurm.conf"
    conf.write_text(f"""ClusterName=cfctool-test
SlurmctldHost={host}(127.0.0.1)
SlurmUser=root
SlurmdUser=root
SlurmctldPort={_free_port()}
SlurmdPort={_free_port()}
AuthType=auth/munge
AuthInfo=socket={d}/munge/munge.sock
CredType=cred/munge
StateSaveLocation={d}/state
SlurmdSpoolDir={d}/spool
SlurmctldPidFile={d}/slurmctld.pid
SlurmdPidFile={d}/slurmd.pid
SlurmctldLogFile={d}/log/slurmctld.log
SlurmdLogFile={d}/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
ReturnToService=2
SchedulerType=sched/builtin
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
NodeName={host} NodeAddr=127.0.0.1 CPUs=2 RealMemory=1000 State=UNKNOWN
PartitionName=test Nodes=ALL Default=YES MaxTime=INFINITE State=UP OverSubscribe=FORCE:4
""")
    env = {**os.environ, "SLURM_CONF": str(conf),
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    started = []
    try:
        for argv, pidfile in (
            ([_which("munged"), "--force", f"--socket={d}/munge/munge.sock", f"--key-file={key}",
              f"--pid-file={d}/munge/munged.pid", f"--log-file={d}/munge/munged.log",
              f"--seed-file={d}/munge/munge.seed"], d / "munge" / "munged.pid"),
            ([_which("slurmctld"), "-f", str(conf)], d / "slurmctld.pid"),
            ([_which("slurmd"), "-f", str(conf), "-N", host], d / "slurmd.pid"),
        ):
            run = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=30)
            if run.returncode != 0:
                pytest.skip(f"{Path(argv[0]).name} did not start: {run.stderr.strip()[-300:]}")
            started.append(pidfile)
        for _ in range(100):  # the node registers within seconds
            state = subprocess.run(["sinfo", "-h", "-o", "%t"], env=env, capture_output=True, text=True).stdout
            if state.strip() == "idle":
                break
            time.sleep(0.2)
        else:
            pytest.skip(f"the Slurm node did not come up (state {state.strip()!r}); see {d}/log")
        yield env
    finally:
        for pidfile in reversed(started):
            _stop(pidfile)


def _report(directory: Path) -> dict:
    return {Path(c["path"]).name: c for c in yaml.safe_load((directory / "report.yaml").read_text())["checkpoints"]}


def test_the_quickstart_pipeline_runs_as_slurm_jobs_and_gives_the_local_tables(slurm, tmp_path):
    """The same Makefile, every command a Slurm job (`CFCTOOL="srun ... cfctool"`, two at a time
    under -j2 on a shared filesystem), against a local run: the same accuracies, parameters,
    weight bytes and files; only the records' wall times differ (a few bytes of file size)."""
    tiny = ["TRAIN_SIZE=256", "EPOCHS=1", "BENCH=--batches 2 --repeats 3"]
    results = {}
    for where, cfctool in (("local", "cfctool"), ("slurm", "srun --quiet --nodes 1 --ntasks 1 --cpus-per-task 1 "
                                                          "cfctool")):
        (tmp_path / where).mkdir()
        run = subprocess.run(["make", "-s", "-j2", "-f", str(ROOT / "examples/quickstart.mk"), "OUT=qs",
                              f"CFCTOOL={cfctool}", *tiny], cwd=tmp_path / where, env=slurm, capture_output=True,
                             text=True, timeout=600)
        assert run.returncode == 0, run.stderr[-3000:]
        qs = tmp_path / where / "qs"
        report = subprocess.run(["cfctool", "report", *(f"qs/{m}.st" for m in ("teacher", "pruned", "student",
                                                                               "student-int8")),
                                 "-o", "qs/report.yaml"], cwd=tmp_path / where, env=slurm, capture_output=True,
                                text=True)
        assert report.returncode == 0, report.stderr
        results[where] = _report(qs)
    local, slurm_run = results["local"], results["slurm"]
    assert list(local) == list(slurm_run) == ["teacher.st", "pruned.st", "student.st", "student-int8.st"]
    for name in local:
        for key in ("accuracy", "params", "nonzero_params", "tensor_bytes", "history"):
            assert local[name][key] == slurm_run[name][key], (name, key)
        assert abs(local[name]["file_bytes"] - slurm_run[name]["file_bytes"]) < 64
        assert local[name]["speedup"] is not None and slurm_run[name]["speedup"] is not None


def test_a_two_rank_training_through_slurm_matches_torchrun(slurm, tmp_path):
    """`srun torchrun` (one Slurm task, two ranks) trains the weights `torchrun` alone trains from
    the same seed."""
    args = ["-m", "cfctool", "train", "xor", "--train-size", "512", "--test-size", "128", "--epochs", "1",
            "--batch-size", "64", "--seed", "0", "--threads", "1", "-q"]
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
    env = {**slurm, "OMP_NUM_THREADS": "1"}
    local = subprocess.run([*torchrun, *args, "-o", "local.st"], cwd=tmp_path, env=env, capture_output=True,
                           text=True, timeout=300)
    assert local.returncode == 0, local.stderr[-3000:]
    through = subprocess.run(["srun", "--quiet", "--nodes", "1", "--ntasks", "1", "--cpus-per-task", "2", *torchrun,
                              *args, "-o", "slurm.st"], cwd=tmp_path, env=env, capture_output=True, text=True,
                             timeout=300)
    assert through.returncode == 0, through.stderr[-3000:]
    a, b = checkpoint.load(tmp_path / "local.st"), checkpoint.load(tmp_path / "slurm.st")
    assert b.record["history"][-1]["world_size"] == 2
    assert all(bool((a.tensors[k] == b.tensors[k]).all()) for k in a.tensors)
    assert a.record["metrics"]["accuracy"] == b.record["metrics"]["accuracy"]
