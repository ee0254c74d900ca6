"""docs/tutorial.md runs as written, on a store this test makes.

The tutorial is the manual's worked example of the third use (open a store with xarray
alone, compute a statistic of your own, correlate it, compare it with EZNAS-A and a stored
proxy, turn it into a program file ``score`` accepts). Its code blocks run in order in one
Python namespace (shell blocks through ``eznas_store.cli.main``), in a folder holding what
the tutorial expects, ``demo-out/store.zarr``: here a small store ingested by the command
line from a made-up digits benchmark (12 networks, batch 2, C=4, N=1, with the 13 proxies),
so the whole page runs in well under a minute. A block marked ``<!-- runs: no -->`` is only
parsed (``tests/test_docs.py`` checks every command line of the manual).
"""

from __future__ import annotations

import shlex
from pathlib import Path

import numpy as np

from test_docs import NOT_RUN, SHELL, command_lines, markdown_blocks

TUTORIAL = Path(__file__).resolve().parents[1] / "docs" / "tutorial.md"


def test_the_tutorial_runs_as_written_on_a_store_it_makes(tmp_path, monkeypatch, capsys, one_torch_thread):
    from conftest import make_bench

    from eznas_store.cli import main

    monkeypatch.chdir(tmp_path)
    (tmp_path / "demo-out").mkdir()
    make_bench(tmp_path / "demo-out" / "digits_labels.csv", n=12, seed=5)
    assert main(["ingest", "--store", "demo-out/store.zarr", "--benchmark", "demo-out/digits_labels.csv",
                 "--dataset", "digits", "--image-size", "8", "--channels", "4", "--cells", "1",
                 "--batch-size", "2", "--device", "cpu", "--no-progress"]) == 0

    blocks = [b for b in markdown_blocks(TUTORIAL) if b.marker != NOT_RUN]
    kinds = [b.lang for b in blocks]
    assert kinds.count("python") >= 5 and "bash" in kinds, kinds
    namespace: dict = {"__name__": "__tutorial__"}
    for b in blocks:
        if b.lang == "python":
            exec(compile(b.code, b.where, "exec"), namespace)
        elif b.lang in SHELL:
            for argv in command_lines(b.code):
                rc = main(argv)
                assert rc == 0, f"{b.where}: eznas-store {shlex.join(argv)}: {capsys.readouterr().err[-2000:]}"
        else:
            raise AssertionError(f"{b.where}: a {b.lang!r} block in the tutorial")

    # what the page claims: its numpy statistic, the program file it wrote and the scores agree
    ours = namespace["ours"]
    nets = namespace["nets"]
    assert len(nets) == 12 and np.isfinite(ours[nets]).all()
    mine = namespace["mine"]
    assert len(mine) == 12 and np.allclose(mine.score.to_numpy(), ours[mine.network.to_numpy()], rtol=1e-5)
    assert set(namespace["scored"].program) == {"effective-channels", "eznas-a", "synflow"}
    stored = namespace["rows"]["synflow (stored)"]
    scored_synflow = namespace["scored"].query("program == 'synflow'")
    assert np.allclose(scored_synflow.score.to_numpy(), stored[scored_synflow.network.to_numpy()], equal_nan=True)
    assert (tmp_path / "effective-channels.json").is_file()
