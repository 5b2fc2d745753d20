import os

# Tests share the machine with other work: one thread per process (oversubscription slows training 10-35x).
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MPLBACKEND", "Agg")

import pytest  # noqa: E402

from speechkit.benchmark import BenchmarkConfig, generate  # noqa: E402


@pytest.fixture(scope="session")
def smoke_benchmark(tmp_path_factory):
    """The smoke-profile benchmark, generated once per test session (a few seconds)."""
    root = tmp_path_factory.mktemp("benchmark") / "smoke"
    record = generate(BenchmarkConfig(workers=1), root, progress=False)
    return root, record
