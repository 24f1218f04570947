"""The Ray backend (``--backend ray``, ``--address``) on clusters, with registered objects and in a
process where Ray is already running (audit 89): the address is checked and the cluster reached
before anything is written, the tasks get absolute paths and the driver's cache, ``RAY_ADDRESS``
is followed as Ray follows it, ``--threads`` must fit on a node, what cannot be serialized is
refused first, registered data go into the object store once, and ``--jobs`` bounds the runs in
flight.

Ray is an optional extra, absent in CI: most tests use :class:`FakeRay`, a small stand-in put in
``sys.modules["ray"]`` that behaves as Ray 2.x does where it matters here (``ray.init``'s address
rules and its refusal of ``num_cpus`` for a running cluster, a wait without end for an address
nothing answers at or a task no node can hold, arguments serialized per task, a worker with its
own working directory and environment). The tests at the end use the real Ray and skip without it.
"""

from __future__ import annotations

import itertools
import os
import pickle
import socket
import sys
import threading
import types
from pathlib import Path

import pytest
import torch

import runs
from runs import parallel
from runs.cli import main
from tests.runs.helpers import FASTEST, write_toml

pytestmark = pytest.mark.usefixtures("clean_registries")

# 2 variants x 2 seeds of the fastest experiment: 4 runs
FOUR = FASTEST.replace("seeds = 1", "seeds = 2") + '[[variants]]\nname = "b"\n'
# the same experiment as a dict, for runs.run
FASTEST_DICT = {
    "name": "tiny",
    "seeds": 1,
    "dataset": {"name": "mnist1d", "train_examples": 200, "test_examples": 100},
    "model": {"name": "logistic"},
    "train": {"steps": 5, "batch_size": 50, "eval_every": 5},
    "optimizer": {"name": "sgd", "lr": 0.1},
    "variants": [{"name": "a"}],
}
ALLOWED = "(allowed: HOST:PORT, ray://HOST:PORT or auto)"

_REFS: dict[str, FakeRef] = {}
_KEYS = itertools.count()


def _ref_of(key: str) -> FakeRef:
    return _REFS[key]


class FakeRef:
    """An object reference: pickles as its id (as Ray's does), not as what it stands for."""

    def __init__(self, *, value=None, call=None, cpus: float = 0) -> None:
        self.key = f"ref{next(_KEYS)}"
        self.value, self.call, self.cpus = value, call, cpus
        _REFS[self.key] = self

    def hex(self) -> str:
        return self.key

    def __reduce__(self):
        return _ref_of, (self.key,)


class FakeTaskError(Exception):
    def __init__(self, cause: Exception) -> None:
        super().__init__(repr(cause))
        self.cause = cause


class FakeRay(types.ModuleType):
    """What ``runs.parallel`` calls of ``ray``, with Ray 2.x's behaviour where the findings are."""

    def __init__(self, *, initialized=False, gcs="10.0.0.1:6379", cluster=(4,), reachable=()):
        super().__init__("ray")
        self.initialized, self.gcs = initialized, gcs
        self.node_cpus = list(cluster) if initialized else []
        self.cluster, self.reachable = list(cluster), set(reachable)
        self.inits: list[dict] = []
        self.shutdowns = 0
        self.puts: list = []
        self.arg_bytes: list[int] = []
        self.in_flight = self.max_in_flight = 0
        self.worker_dir: Path | None = None  # a worker's own working directory ...
        self.worker_env: dict[str, str] = {}  # ... and environment, as on a cluster's node
        self.exceptions = types.SimpleNamespace(RayTaskError=FakeTaskError)
        self.cloudpickle = types.SimpleNamespace(dumps=pickle.dumps)
        self.on_init = lambda: None  # (a test's look at the disk when ray.init is called)

    def init(self, address=None, *, num_cpus=None, **options):
        self.inits.append({"address": address, "num_cpus": num_cpus, **options})
        self.on_init()
        if address in (None, "auto") and os.environ.get("RAY_ADDRESS"):
            address = os.environ["RAY_ADDRESS"]  # (Ray's rule: the environment's cluster)
        if address == "auto":
            raise ConnectionError("Could not find any running Ray instance.")
        if address in (None, "local"):
            self.node_cpus, self.gcs = [num_cpus or 2], "127.0.0.1:40000"
        else:
            if "://" not in address and ":" not in address:
                raise ValueError(f"Invalid address format: {address}")
            if num_cpus is not None:
                raise ValueError(
                    "When connecting to an existing cluster, num_cpus and num_gpus must not be "
                    "provided."
                )
            if address not in self.reachable:
                raise RuntimeError(f"fake ray: ray.init waits forever for the GCS at {address}")
            self.node_cpus, self.gcs = list(self.cluster), address
        self.initialized = True

    def is_initialized(self) -> bool:
        return self.initialized

    def shutdown(self) -> None:
        self.initialized = False
        self.shutdowns += 1

    def nodes(self) -> list[dict]:
        alive = [{"Alive": True, "Resources": {"CPU": float(c)}} for c in self.node_cpus]
        return [*alive, {"Alive": False, "Resources": {"CPU": 512.0}}]  # (a dead node: no CPUs)

    def get_runtime_context(self):
        return types.SimpleNamespace(gcs_address=self.gcs)

    def put(self, value) -> FakeRef:
        self.puts.append(value)
        return FakeRef(value=value)

    def remote(self, *, num_cpus: float = 1, **options):
        fake = self

        def decorate(function):
            class Remote:
                @staticmethod
                def remote(*args) -> FakeRef:
                    try:  # (Ray serializes every argument of every task)
                        data = pickle.dumps(args)
                    except Exception as err:
                        raise TypeError(
                            f"Could not serialize the argument {args!r}: {err}"
                        ) from err
                    fake.arg_bytes.append(len(data))
                    fake.in_flight += 1
                    fake.max_in_flight = max(fake.max_in_flight, fake.in_flight)
                    return FakeRef(call=(function, data), cpus=num_cpus)

            return Remote()

        return decorate

    def wait(self, refs, num_returns=1):
        first = refs[0]
        if first.call is not None and first.cpus > max(self.node_cpus, default=0):
            raise RuntimeError(f"fake ray: a task of {first.cpus} CPUs waits forever")
        return [first], list(refs[1:])

    def get(self, ref: FakeRef):
        if ref.call is None:
            return ref.value
        self.in_flight -= 1
        function, data = ref.call
        args = [a.value if isinstance(a, FakeRef) else a for a in pickle.loads(data)]
        cwd, env = os.getcwd(), dict(os.environ)
        try:  # the task runs where a worker is: its directory, its environment
            if self.worker_dir is not None:
                os.chdir(self.worker_dir)
            os.environ.update(self.worker_env)
            return function(*args)
        except Exception as err:
            raise FakeTaskError(err) from err
        finally:
            os.chdir(cwd)
            os.environ.clear()
            os.environ.update(env)


@pytest.fixture
def fake_ray(monkeypatch) -> FakeRay:
    fake = FakeRay()
    monkeypatch.setitem(sys.modules, "ray", fake)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    return fake


@pytest.fixture
def listening():
    """``HOST:PORT`` of a socket that accepts connections (a cluster's head, as far as a TCP
    connection sees it)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    yield f"127.0.0.1:{server.getsockname()[1]}"
    server.close()


@pytest.fixture
def closed_port() -> str:
    """``HOST:PORT`` where nothing listens (a port just freed): a connection is refused."""
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    return f"127.0.0.1:{port}"


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    assert err.startswith("stepsize: error: "), err
    assert err.count("\n") == 1, err
    return err


def _run(tmp_path: Path, *extra: str, text: str = FASTEST, logdir: str | None = None) -> int:
    toml = write_toml(tmp_path / "exp.toml", text)
    logs = logdir if logdir is not None else str(tmp_path / "logs")
    return main(["run", str(toml), "--logdir", logs, "--quiet", *extra])


def _results(root: Path) -> dict:
    import json

    return {
        (r["variant"], r["seed"]): r
        for r in (json.loads(p.read_text()) for p in root.glob("*/seed*/result.json"))
    }


# F1: the address's form, and a cluster that does not answer, refused before anything is written


@pytest.mark.parametrize(
    "address",
    ["", "not-an-address", "host", "host:", "host:0", "host:65536", ":6379", "ray://", "h:1:2",
     "http://h:1", "ray://h", "127.0.0.1:6379 "],
)  # fmt: skip
def test_a_malformed_address_is_refused_naming_the_flag(tmp_path, capsys, fake_ray, address):
    assert _run(tmp_path, "--backend", "ray", "--address", address) == 2
    assert f"--address: {address!r} is not a Ray address {ALLOWED}" in _one_error_line(capsys)
    assert not (tmp_path / "logs").exists()
    assert fake_ray.inits == []


@pytest.mark.parametrize(
    "address", ["127.0.0.1:6379", "head-1.cluster.example:6379", "ray://10.0.0.1:10001",
                "[::1]:6379", "[fe80::1]:1", "auto", "h:65535"]
)  # fmt: skip
def test_the_allowed_address_forms_pass_the_check(address):
    parallel.check_address(address, "--address")  # (no exception)


def test_an_empty_address_is_refused_with_the_process_backend(tmp_path, capsys):
    assert _run(tmp_path, "--address", "") == 2
    assert "--address needs --backend ray" in _one_error_line(capsys)
    assert not (tmp_path / "logs").exists()


def test_a_malformed_address_from_python_names_the_keyword(tmp_path, fake_ray):
    with pytest.raises(ValueError, match=r"^address: 'nohost' is not a Ray address \(allowed"):
        runs.run(FASTEST_DICT, logdir=tmp_path / "logs", backend="ray", address="nohost")
    assert not (tmp_path / "logs").exists()


def test_an_unreachable_address_is_one_line_before_anything_is_written(
    tmp_path, capsys, fake_ray, closed_port
):
    assert _run(tmp_path, "--backend", "ray", "--address", closed_port) == 2
    err = _one_error_line(capsys)
    assert f"--address {closed_port}: no Ray cluster answers at {closed_port} within 10 s" in err
    assert "ConnectionRefusedError" in err
    assert not (tmp_path / "logs").exists()
    assert fake_ray.inits == []  # (ray.init would have waited without end)


def test_a_reachable_cluster_is_connected_before_anything_is_written_and_left_at_the_end(
    tmp_path, capsys, fake_ray, listening
):
    fake_ray.reachable.add(listening)
    written = []
    fake_ray.on_init = lambda: written.append(sorted((tmp_path / "logs").rglob("*")))
    assert _run(tmp_path, "--backend", "ray", "--address", listening) == 0
    assert written == [[]]
    assert fake_ray.inits == [{"address": listening, "num_cpus": None, "log_to_driver": False}]
    assert fake_ray.shutdowns == 1
    assert not fake_ray.initialized
    assert set(_results(tmp_path / "logs" / "tiny")) == {("a", 0)}


# F2: paths and the cache of the driver, whatever the worker's directory and environment


def test_relative_logdir_and_cache_reach_a_worker_in_another_directory(
    tmp_path, capsys, fake_ray, listening, monkeypatch, mnist1d_cache
):
    driver, worker = tmp_path / "driver", tmp_path / "worker"
    driver.mkdir()
    worker.mkdir()
    (driver / "cache").symlink_to(mnist1d_cache)  # (the session's MNIST-1D, relative)
    monkeypatch.chdir(driver)
    monkeypatch.setenv("STEPSIZE_CACHE", "cache")
    fake_ray.reachable.add(listening)
    fake_ray.worker_dir = worker
    fake_ray.worker_env = {"STEPSIZE_CACHE": str(tmp_path / "node-cache")}
    seen = []
    execute = parallel.execute

    def recorded(task, settings, dist=None):
        seen.append((task.run_dir, os.environ.get("STEPSIZE_CACHE")))
        return execute(task, settings, dist)

    monkeypatch.setattr(parallel, "execute", recorded)
    toml = write_toml(driver / "exp.toml", FOUR)
    args = ["run", "exp.toml", "--logdir", "logs", "--quiet", "--backend", "ray", "--jobs", "2"]
    assert main([*args, "--address", listening]) == 0
    assert set(_results(driver / "logs" / "tiny")) == {("a", 0), ("a", 1), ("b", 0), ("b", 1)}
    assert not any(worker.rglob("*"))  # nothing written where the worker runs
    assert not (tmp_path / "node-cache").exists()
    expected = {str(driver / "logs" / "tiny" / v / f"seed{s}") for v in "ab" for s in (0, 1)}
    assert {run_dir for run_dir, _ in seen} == expected
    assert {cache for _, cache in seen} == {str(driver / "cache")}
    assert os.environ["STEPSIZE_CACHE"] == "cache"  # (the driver's own is left as it was)
    assert toml.exists()


def test_a_relative_data_dir_is_sent_absolute(tmp_path, fake_ray, monkeypatch):
    monkeypatch.chdir(tmp_path)
    seen = []
    monkeypatch.setattr(
        parallel, "execute", lambda task, settings, dist=None: seen.append(settings) or {}
    )
    tasks = [parallel.Task(None, 0, "logs/x/seed0")]  # (execute is replaced: no variant needed)
    settings = parallel.Settings(data_dir="data", backend="ray")
    assert parallel.run_all(tasks, settings) == [{}]
    assert [s.data_dir for s in seen] == [str(tmp_path / "data")]


# F3: RAY_ADDRESS (as `ray job submit` sets it) is a running cluster: its CPUs, no num_cpus


def test_ray_address_in_the_environment_is_joined_without_num_cpus(
    tmp_path, capsys, fake_ray, listening, monkeypatch
):
    monkeypatch.setenv("RAY_ADDRESS", listening)
    fake_ray.reachable.add(listening)
    assert _run(tmp_path, "--backend", "ray") == 0
    assert fake_ray.inits == [{"address": listening, "num_cpus": None, "log_to_driver": False}]
    assert set(_results(tmp_path / "logs" / "tiny")) == {("a", 0)}


@pytest.mark.parametrize("how", ["malformed", "unreachable"])
def test_a_bad_ray_address_variable_is_named_before_anything_is_written(
    tmp_path, capsys, fake_ray, closed_port, monkeypatch, how
):
    value = "not-an-address" if how == "malformed" else closed_port
    monkeypatch.setenv("RAY_ADDRESS", value)
    assert _run(tmp_path, "--backend", "ray") == 2
    err = _one_error_line(capsys)
    if how == "malformed":
        assert f"RAY_ADDRESS: 'not-an-address' is not a Ray address {ALLOWED}" in err
    else:
        assert f"RAY_ADDRESS={value}: no Ray cluster answers at {value}" in err
    assert not (tmp_path / "logs").exists()
    assert fake_ray.inits == []


def test_without_an_address_a_new_local_instance_gets_jobs_times_threads_cpus(
    tmp_path, capsys, fake_ray
):
    assert _run(tmp_path, "--backend", "ray", "--jobs", "2", "--threads", "3") == 0
    assert fake_ray.inits == [
        {"address": "local", "num_cpus": 6, "include_dashboard": False, "log_to_driver": False}
    ]
    assert fake_ray.shutdowns == 1


# F4: a --threads no node has is refused, not left waiting


def test_threads_beyond_the_largest_node_are_refused_before_anything_is_written(
    tmp_path, capsys, fake_ray, listening
):
    fake_ray.cluster = [1, 1]  # (and a dead node of 512 CPUs, which does not count)
    fake_ray.reachable.add(listening)
    assert _run(tmp_path, "--backend", "ray", "--address", listening, "--threads", "2") == 2
    err = _one_error_line(capsys)
    assert "--threads 2: the largest node of the Ray cluster has 1 CPUs" in err
    assert not (tmp_path / "logs").exists()
    assert fake_ray.shutdowns == 1
    assert not fake_ray.initialized


def test_threads_beyond_a_ray_started_by_the_caller_are_refused(tmp_path, monkeypatch):
    fake = FakeRay(initialized=True, cluster=(1,))
    monkeypatch.setitem(sys.modules, "ray", fake)
    with pytest.raises(ValueError, match=r"^threads=2: the largest node of the Ray cluster has 1 "):
        runs.run(FASTEST_DICT, logdir=tmp_path / "logs", backend="ray", threads=2)
    assert not (tmp_path / "logs").exists()
    assert fake.initialized  # (the caller's Ray, left as it was)
    assert fake.shutdowns == 0
    assert fake.inits == []


# F5: what Ray cannot serialize is refused first, as the process backend refuses what cannot pickle


class LockedFactory:
    """A model factory holding a lock: neither pickle nor cloudpickle can serialize it."""

    def __init__(self) -> None:
        self.lock = threading.Lock()

    def __call__(self, input_shape, num_classes):
        return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(input_shape[0], num_classes))


@pytest.mark.parametrize("jobs", [1, 2])
def test_an_unserializable_model_is_refused_under_ray_before_anything_is_written(
    tmp_path, fake_ray, jobs
):
    experiment = {**FASTEST_DICT, "model": {"name": "locked"}}
    message = (
        r"^model 'locked' cannot be serialized to send it to the Ray tasks of backend='ray' "
        r"\(TypeError: cannot pickle '_thread.lock' object\); define it at the top level of a "
        r"module, or leave out backend='ray'$"
    )
    with pytest.raises(TypeError, match=message):
        runs.run(
            experiment, logdir=tmp_path / "logs", backend="ray", jobs=jobs,
            models={"locked": LockedFactory()},
        )  # fmt: skip
    assert not (tmp_path / "logs").exists()
    assert fake_ray.inits == []


def test_the_process_backend_message_is_unchanged(tmp_path):
    with pytest.raises(TypeError) as raised:
        runs.run(
            {**FASTEST_DICT, "model": {"name": "locked"}}, logdir=tmp_path / "logs", jobs=2,
            models={"locked": LockedFactory()},
        )  # fmt: skip
    assert str(raised.value) == (
        "model 'locked' cannot be pickled to send it to the worker processes of jobs=2 "
        "(TypeError: cannot pickle '_thread.lock' object); define it at the top level of a "
        "module (not as a lambda or a local function), or run one job"
    )


# F6: a registered dataset goes into the object store once, not with every task


def _toy(rows: int = 4000, features: int = 64) -> runs.DatasetSplits:
    g = torch.Generator().manual_seed(5)
    x = torch.randn(rows, features, generator=g)
    y = (x[:, 0] > 0).long()
    return runs.dataset_from(x, y, x[:500], y[:500])


TOY = {
    "name": "toy",
    "seeds": 2,
    "dataset": {"name": "toy"},
    "model": {"name": "logistic"},
    "train": {"steps": 4, "batch_size": 100, "eval_every": 2},
    "optimizer": {"name": "sgd", "lr": 0.1},
    "variants": [{"name": "a"}, {"name": "b", "optimizer": {"lr": 0.05}}],
}


def test_a_registered_dataset_is_put_once_and_gives_the_numbers_of_one_job(tmp_path, fake_ray):
    data = _toy()
    size = sum(t.numel() * t.element_size() for t in (data.train_x, data.test_x))  # ~1.2 MB
    summary = runs.run(TOY, logdir=tmp_path / "ray", backend="ray", jobs=2, datasets={"toy": data})
    assert len(fake_ray.puts) == 1
    assert fake_ray.puts[0]["datasets"]["toy"] is data
    assert len(fake_ray.arg_bytes) == 4
    assert max(fake_ray.arg_bytes) < size / 20  # (each task: a reference, not the tensors)
    runs.run(TOY, logdir=tmp_path / "one", datasets={"toy": data})
    one, ray = _results(tmp_path / "one" / "toy"), _results(tmp_path / "ray" / "toy")
    assert set(ray) == set(one)
    assert len(one) == 4
    for key in one:
        assert ray[key]["history"] == one[key]["history"], key
        assert ray[key]["final"] == one[key]["final"], key
    assert [(r["variant"], r["seed"]) for r in summary["runs"]] == sorted(one)


# F7: a Ray the caller started: its address only, and --jobs runs in flight at most


def test_an_address_other_than_the_callers_ray_is_refused(tmp_path, monkeypatch):
    fake = FakeRay(initialized=True, gcs="10.0.0.1:6379")
    monkeypatch.setitem(sys.modules, "ray", fake)
    with pytest.raises(
        ValueError,
        match=r"^address='10\.0\.0\.2:6379': this process is already connected to the Ray "
        r"cluster at 10\.0\.0\.1:6379",
    ):
        runs.run(FASTEST_DICT, logdir=tmp_path / "logs", backend="ray", address="10.0.0.2:6379")
    assert not (tmp_path / "logs").exists()
    runs.run(FASTEST_DICT, logdir=tmp_path / "logs", backend="ray", address="10.0.0.1:6379")
    assert fake.inits == []
    assert fake.shutdowns == 0
    assert fake.initialized


@pytest.mark.parametrize("initialized", [True, False])
@pytest.mark.parametrize("jobs", [1, 2, 3])
def test_jobs_bound_the_runs_in_flight(tmp_path, monkeypatch, initialized, jobs):
    fake = FakeRay(initialized=initialized, cluster=(16,))
    monkeypatch.setitem(sys.modules, "ray", fake)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setattr(parallel, "execute", lambda task, settings, dist=None: {"id": task.seed})
    tasks = [parallel.Task(None, i, f"r{i}") for i in range(7)]
    got = parallel.run_all(tasks, parallel.Settings(backend="ray"), jobs=jobs)
    assert got == [{"id": i} for i in range(7)]
    assert fake.max_in_flight == jobs
    assert fake.shutdowns == (0 if initialized else 1)


# The real Ray (an optional extra): skipped without it


@pytest.fixture
def real_ray():
    return pytest.importorskip("ray")


@pytest.mark.slow
def test_real_ray_an_unreachable_address_is_one_line(tmp_path, capsys, real_ray, closed_port):
    assert _run(tmp_path, "--backend", "ray", "--address", closed_port) == 2
    assert "no Ray cluster answers at" in _one_error_line(capsys)
    assert not (tmp_path / "logs").exists()


@pytest.mark.slow
def test_real_ray_started_by_the_caller(tmp_path, real_ray, monkeypatch, mnist1d_cache):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    real_ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        with pytest.raises(ValueError, match=r"^threads=3: the largest node of the Ray cluster"):
            runs.run(FASTEST_DICT, logdir=tmp_path / "t", backend="ray", threads=3)
        with pytest.raises(ValueError, match=r"^address='127\.0\.0\.1:1': this process is already"):
            runs.run(FASTEST_DICT, logdir=tmp_path / "t", backend="ray", address="127.0.0.1:1")
        assert not (tmp_path / "t").exists()
        monkeypatch.chdir(tmp_path)
        data = _toy()
        summary = runs.run(TOY, logdir="rel", backend="ray", jobs=2, datasets={"toy": data})
        assert real_ray.is_initialized()  # (the caller's Ray is left running)
    finally:
        real_ray.shutdown()
    runs.run(TOY, logdir=tmp_path / "one", datasets={"toy": data})
    one, ray = _results(tmp_path / "one" / "toy"), _results(tmp_path / "rel" / "toy")
    assert set(ray) == set(one)
    assert len(one) == 4
    for key in one:
        assert ray[key]["history"] == one[key]["history"], key
    assert len(summary["runs"]) == 4
