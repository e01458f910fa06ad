"""log_image in a training loop: a plot per epoch, the same file logged again."""

from __future__ import annotations

import pytest

from runyard import Experiment


@pytest.fixture
def run(ws):
    return Experiment(ws, "images").start_logging(snapshot_directory=None)


@pytest.fixture
def figure():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    ax.plot([1, 2, 3])
    yield fig, ax
    plt.close(fig)


def _uri(run, path: str) -> str:
    return f"aml://artifactId/ExperimentRun/dcid.{run.id}/{path}"


def test_a_plot_per_epoch_in_a_fast_loop(run, figure):
    fig, ax = figure
    for epoch in range(6):
        ax.plot([epoch, epoch + 1])
        run.log_image("loss", plot=fig)
    again = run.experiment.workspace.get_run(run.id)  # another handle on the same run
    again.log_image("loss", plot=fig)
    names = [n for n in run.get_file_names() if n.startswith("loss_")]
    assert len(names) == 7 and all(n.endswith(".png") for n in names)
    logged = run.get_metrics()["loss"]
    assert len(logged) == 7 and len(set(logged)) == 7
    stamps = [uri.rsplit("/loss_", 1)[1].removesuffix(".png") for uri in logged]
    assert any(s.isdigit() for s in stamps)  # the first of a second: <name>_<unix ts>.png
    assert all(s.replace("_", "").isdigit() for s in stamps)  # then <name>_<unix ts>_<n>.png
    images = run.get_metrics("loss", populate=True)["loss"]
    assert len({image.data for image in images}) == 6  # each epoch's picture; the 7th repeats


def test_the_same_path_logged_again(run, figure, tmp_path):
    fig, ax = figure
    (tmp_path / "work" / "outputs").mkdir(exist_ok=True)
    fig.savefig("outputs/roc.png")
    run.log_image("roc", path="outputs/roc.png")
    run.log_image("roc", path="outputs/roc.png")  # unchanged: the stored file is reused
    ax.plot([3, 1])
    fig.savefig("outputs/roc.png")
    run.log_image("roc", path="outputs/roc.png")  # changed: kept under a new name
    logged = run.get_metrics()["roc"]
    assert logged[:2] == [_uri(run, "outputs/roc.png")] * 2
    assert logged[2] != logged[0] and logged[2].rsplit("/", 1)[1].startswith("roc_")
    newest = run.get_metrics("roc", populate=True)["roc"][2]
    assert newest.data == (tmp_path / "work" / "outputs" / "roc.png").read_bytes()
    run.complete()
    assert run.get_status() == "Completed"
    assert run.get_file_names().count("outputs/roc.png") == 1
