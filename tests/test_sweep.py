import csv
import gc
import json
import logging
import os
import sys
import warnings

import pytest
from amaranth.hdl import UnusedElaboratable
from distributed import LocalCluster

from wavefabric import sweep
from wavefabric.cli import main
from wavefabric.model.files import MANIFEST
from wavefabric.plot import pareto_front
from wavefabric.sim.synth import count_cells

# The in-process workers of the shared cluster estimate SampleRNN engines without elaborating them.
pytestmark = pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")

GRID = "lanes=4,8 dim=32,64"  # SampleRNN estimates: a real-time factor and a DSP48E1 count per point
PNG = b"\x89PNG\r\n\x1a\n"


def run(capsys, *argv):
    status = main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


def rows(folder):
    with open(folder / "points.csv", newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def scheduler():
    """The address of a small in-process cluster shared by the tests that pass --scheduler."""
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None,
                      silence_logs=logging.ERROR) as cluster:
        yield cluster.scheduler_address
    with warnings.catch_warnings():
        # The engines the workers estimated sit in reference cycles: collected here, not in a later test.
        warnings.simplefilter("ignore", UnusedElaboratable)
        gc.collect()


def test_estimate_sweep_on_local_cluster(capsys, tmp_path):
    folder = tmp_path / "sweep"
    workers = min(2, os.cpu_count())
    status, out, err = run(capsys, "sweep", "samplernn", "--grid", GRID, "--workers", str(workers), "-o", str(folder))
    assert status == 0, err
    assert out.startswith(f"sweep samplernn: 4 points, 4 run on {workers} worker")
    table = rows(folder)
    assert [(row["lanes"], row["dim"]) for row in table] == [("4", "32"), ("4", "64"), ("8", "32"), ("8", "64")]
    for row in table:
        # Each point's figures are what `wavefabric estimate samplernn` prints for its options.
        _, estimate, _ = run(capsys, "estimate", "samplernn", "--lanes", row["lanes"], "--dim", row["dim"], "--json")
        expected = json.loads(estimate)
        assert float(row["cycles"]) == expected["cycles_per_sample"]
        assert row["cycles_figure"] == "estimate.cycles_per_sample"
        assert float(row["real_time_factor"]) == expected["real_time_factor"]
        assert int(row["dsp48e1"]) == expected["dsp48e1"]
        assert row["fits_xc7z020"] == str(expected["fits_dsp"]) and row["error"] == ""
    points = json.loads((folder / "points.json").read_text())["points"]
    assert [point["params"] for point in points] == [{"lanes": row["lanes"], "dim": row["dim"]} for row in table]
    assert points[0]["commands"] == {"estimate": ["estimate", "samplernn", "--dim", "32", "--lanes", "4"]}
    assert (folder / "real_time_factor_vs_dsp48e1.png").read_bytes().startswith(PNG)
    assert not (folder / "real_time_factor_vs_lut.png").exists()  # no LUT figures without --synth
    assert json.loads((folder / MANIFEST).read_text())["files"].keys() == {
        "points.csv", "points.json", "real_time_factor_vs_dsp48e1.png"}


def test_failing_point_is_recorded_and_the_rest_finish(capsys, tmp_path, scheduler):
    folder = tmp_path / "sweep"
    status, out, _ = run(capsys, "sweep", "samplernn", "--grid", "simd=3,4,8", "--scheduler", scheduler,
                         "-o", str(folder))
    assert status == 1
    assert f"3 points, 3 run on 2 workers at {scheduler} in " in out and "1 failed" in out
    assert "  failed simd=3: simd must be an integer >= 4, not 3\n" in out
    failed, *finished = rows(folder)
    assert failed["error"] == "simd must be an integer >= 4, not 3" and failed["cycles"] == ""
    assert all(row["error"] == "" and float(row["real_time_factor"]) > 0 for row in finished)


def test_rerun_does_no_work_and_a_wider_grid_runs_only_its_new_points(capsys, tmp_path, scheduler):
    folder = tmp_path / "sweep"
    assert run(capsys, "sweep", "gemm", "--grid", "rows=4,16", "--scheduler", scheduler, "-o", str(folder))[0] == 0
    first = json.loads((folder / "points.json").read_text())
    # Nothing listens at this address: a rerun with every point stored must not even connect.
    status, out, err = run(capsys, "sweep", "gemm", "--grid", "rows=4,16", "--scheduler", "tcp://127.0.0.1:1",
                           "-o", str(folder))
    assert status == 0, err
    assert out.startswith("sweep gemm: 2 points, 0 run in ") and "2 reused; 0 failed" in out
    assert json.loads((folder / "points.json").read_text()) == first
    # A default given explicitly is the same point, reused under the new grid's spelling.
    status, out, _ = run(capsys, "sweep", "gemm", "--grid", "rows=4,16 cols=8", "--scheduler", "tcp://127.0.0.1:1",
                         "-o", str(folder))
    assert status == 0 and "2 points, 0 run in " in out
    assert [(row["rows"], row["cols"]) for row in rows(folder)] == [("4", "8"), ("16", "8")]
    status, out, _ = run(capsys, "sweep", "gemm", "--grid", "rows=4,8,16", "--scheduler", scheduler,
                         "-o", str(folder))
    assert status == 0 and "3 points, 1 run on 2 workers" in out and "2 reused" in out
    assert [point["run_seconds"] for point in json.loads((folder / "points.json").read_text())["points"][::2]] == [
        point["run_seconds"] for point in first["points"]]


def test_a_point_lost_with_its_worker_is_run_again(capsys, tmp_path, scheduler, monkeypatch):
    def lost(argvs):
        raise OSError("worker lost")

    folder = tmp_path / "sweep"
    with monkeypatch.context() as patch:
        patch.setattr(sweep, "run_point", lost)  # the in-process workers call it directly
        status, out, _ = run(capsys, "sweep", "gru", "--grid", "lanes=4", "--scheduler", scheduler, "-o", str(folder))
    assert status == 1 and "failed lanes=4: cluster: worker lost" in out
    status, out, _ = run(capsys, "sweep", "gru", "--grid", "lanes=4", "--scheduler", scheduler, "-o", str(folder))
    assert status == 0 and "1 run on 2 workers" in out
    assert rows(folder)[0]["cycles"] == "792"  # wavefabric estimate gru --lanes 4


@pytest.mark.parametrize("argv, message", [
    (["samplernn", "--grid", "lanes=4 bogus=1"],
     "wavefabric: error: samplernn has no grid key 'bogus' for estimate: the legal keys are clock, dim, "
     "frame-sizes, gru-lanes, lanes, latency, n-rnn, q-levels, simd"),
    (["gemm", "--grid", "rows=0,4"], "wavefabric estimate gemm: argument --rows: must be >= 1, not 0 (see --help)"),
    (["gemm", "--grid", "rows"], "wavefabric: error: grid item 'rows' is not KEY=VALUE,VALUE,... (for example "
                                 "rows=8,16)"),
    (["gemm", "--grid", "rows=4,4"], "wavefabric: error: grid item 'rows=4,4' repeats a value"),
    (["pwg", "--grid", "int8-pack=yes"],
     "wavefabric: error: grid key 'int8-pack' is a switch: its values are true and false, not 'yes'"),
    (["systolic", "--grid", "rows=8", "--sim"], "wavefabric: error: systolic has no 'sim', only 'verilog', 'synth'"),
    (["weightnorm", "--grid", "lanes=8"], "wavefabric: error: weightnorm has no 'estimate': sweep it with --synth "
                                          "or --sim"),
    (["gemm", "--grid", "rows=4", "--workers", "100000"], "wavefabric sweep: argument --workers: must be from 1 to"),
])
def test_bad_sweep_one_line_before_any_work(capsys, tmp_path, argv, message):
    folder = tmp_path / "sweep"
    status, out, err = run(capsys, "sweep", *argv, "-o", str(folder))
    assert status == 2 and out == ""
    assert err.startswith(message) and err.count("\n") == 1
    assert not folder.exists()


def test_user_files_are_kept(capsys, tmp_path, scheduler):
    folder = tmp_path / "sweep"
    folder.mkdir()
    (folder / "notes.txt").write_text("mine")
    argv = ["sweep", "gemm", "--grid", "rows=8", "--scheduler", scheduler, "-o", str(folder)]
    status, _, err = run(capsys, *argv)
    assert status == 2 and "holds files wavefabric did not write (notes.txt)" in err
    assert sorted(entry.name for entry in folder.iterdir()) == ["notes.txt"]
    assert run(capsys, *argv, "--force")[0] == 0
    assert (folder / "notes.txt").read_text() == "mine" and len(rows(folder)) == 1
    # The user's own table is never replaced: refused before any point runs.
    other = tmp_path / "other"
    other.mkdir()
    (other / "points.csv").write_text("mine")
    status, _, err = run(capsys, "sweep", "gemm", "--grid", "rows=8", "--scheduler", scheduler, "--force",
                         "-o", str(other))
    assert status == 2 and "has its own 'points.csv'" in err
    assert (other / "points.csv").read_text() == "mine"


def test_plot_command(capsys, tmp_path, scheduler):
    folder = tmp_path / "sweep"
    run(capsys, "sweep", "samplernn", "--grid", GRID, "--scheduler", scheduler, "-o", str(folder))
    points = (folder / "points.json").read_bytes()
    (folder / "real_time_factor_vs_dsp48e1.png").unlink()
    (folder / "notes.txt").write_text("mine")
    status, _, err = run(capsys, "plot", str(folder))
    assert status == 2 and "holds files wavefabric did not write (notes.txt)" in err
    status, out, err = run(capsys, "plot", str(folder), "--force")
    assert status == 0, err
    assert out == f"plot samplernn: real_time_factor_vs_dsp48e1.png -> {folder}/\n"
    assert (folder / "notes.txt").read_text() == "mine"
    assert (folder / "real_time_factor_vs_dsp48e1.png").read_bytes().startswith(PNG)
    assert (folder / "points.json").read_bytes() == points
    status, _, err = run(capsys, "plot", str(tmp_path))
    assert status == 2 and err == f"wavefabric: error: '{tmp_path / 'points.json'}' does not exist: is " \
                                  f"'{tmp_path}' a sweep's folder?\n"


def test_missing_extra_says_how_to_install(capsys, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "distributed", None)
    status, out, err = run(capsys, "sweep", "gemm", "--grid", "rows=4", "-o", str(tmp_path / "sweep"))
    assert status == 2 and out == ""
    assert err == "wavefabric: error: sweep and plot need distributed: pip install 'wavefabric[sweep]'\n"


def test_pareto_front():
    xs, ys = [4, 1, 2, 2, 3, 5], [9.0, 1.0, 5.0, 3.0, 5.0, 9.0]
    assert pareto_front(xs, ys, higher_is_better=True) == [1, 2, 0]
    assert pareto_front(xs, [-y for y in ys], higher_is_better=False) == [1, 2, 0]
    assert pareto_front([1, 2], [2.0, 1.0], higher_is_better=True) == [0]


def test_summary_of_synthesis_and_simulation():
    counts = count_cells({"LUT6": 60_000, "FDRE": 10, "DSP48E1": 4})
    figures = {"estimate": {"model_cycles": 1034, "utilization": 0.99},
               "synth": counts, "sim": {"cycles": 1040, "utilization": 0.98, "bit_exact": True}}
    summary = sweep.summarize(figures)
    assert summary == {"cycles": 1040, "cycles_figure": "sim.cycles", "real_time_factor": None, "utilization": 0.98,
                       "lut": 60_000, "lutram": 0, "ff": 10, "dsp48e1": 4, "bram36": 0.0, "fits_xc7z020": False,
                       "bit_exact": True}


def test_sim_sweep_reports_simulated_cycles(capsys, tmp_path, scheduler):
    folder = tmp_path / "sweep"
    status, out, err = run(capsys, "sweep", "gru", "--grid", "input=8 hidden=8 lanes=2 simd=4 steps=1", "--sim",
                           "--scheduler", scheduler, "-o", str(folder))
    assert status == 0, err
    [row] = rows(folder)
    assert (row["cycles"], row["cycles_figure"], row["bit_exact"]) == ("69", "sim.cycles_per_step", "True")
    [point] = json.loads((folder / "points.json").read_text())["points"]
    assert point["figures"]["estimate"]["model_cycles_per_step"] == 69  # the cycle model agrees
    assert point["commands"]["sim"] == ["sim", "gru", "--hidden", "8", "--input", "8", "--lanes", "2", "--simd", "4",
                                        "--steps", "1"]


def test_a_pwg_point_runs_estimate_and_synth():
    [point] = sweep.grid_points("pwg", {"rows": ["8"], "int8-pack": ["true"]}, synth=True)
    assert point.argvs == {"estimate": ["estimate", "pwg", "--int8-pack", "--rows", "8"],
                           "synth": ["synth", "pwg", "--rows", "8"]}
