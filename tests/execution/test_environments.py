"""Environments and run configurations: interpreters, pip virtualenvs, YAML files."""

from __future__ import annotations

import base64
import hashlib
import sys
import zipfile
from pathlib import Path

import pytest

from runyard import Environment, RunConfiguration, ScriptRunConfig, UserError

from .conftest import wait_until


def _wheel(folder, name="demo_pkg", version="0.1"):
    """A minimal pure-Python wheel, so installing it needs no network."""
    files = {
        f"{name}/__init__.py": f"VERSION = {version!r}\n",
        f"{name}-{version}.dist-info/METADATA": (
            f"Metadata-Version: 2.1\nName: {name.replace('_', '-')}\nVersion: {version}\n"
        ),
        f"{name}-{version}.dist-info/WHEEL": (
            "Wheel-Version: 1.0\nGenerator: runyard-tests\nRoot-Is-Purelib: true\n"
            "Tag: py3-none-any\n"
        ),
    }
    record = []
    for path, text in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=")
        record.append(f"{path},sha256={digest.decode()},{len(text.encode())}")
    record.append(f"{name}-{version}.dist-info/RECORD,,")
    files[f"{name}-{version}.dist-info/RECORD"] = "\n".join(record) + "\n"
    path = folder / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as zf:
        for name_, text in files.items():
            zf.writestr(name_, text)
    return path


USES_PACKAGE = """
import sys
import demo_pkg
from runyard import Run
run = Run.get_context()
run.log("version", demo_pkg.VERSION)
print("interpreter", sys.executable)
"""


def test_pip_requirements_build_a_virtualenv_once(project, tmp_path):
    wheel = _wheel(tmp_path)
    requirements = tmp_path / "requirements.txt"
    requirements.write_text(f"# what the script needs\n{wheel}\n")
    env = Environment.from_pip_requirements("demo", str(requirements))
    project.script("uses.py", USES_PACKAGE)
    first = project.exp.submit(ScriptRunConfig(str(project.root), "uses.py", environment=env))
    assert first.wait_for_completion(raise_on_error=False)["status"] == "Completed", (
        first.get_details_with_logs()["logFiles"]
    )
    assert first.get_metrics() == {"version": "0.1"}
    assert "environments" not in project.log_text(first)
    assert sys.executable not in project.log_text(first)
    logs = first.get_details_with_logs()["logFiles"]
    assert "environment ready" in logs["system_logs/environment.txt"]
    second = project.exp.submit(ScriptRunConfig(str(project.root), "uses.py", environment=env))
    assert second.wait_for_completion()["status"] == "Completed"
    reused = second.get_details_with_logs()["logFiles"]["system_logs/environment.txt"]
    assert "reusing environment" in reused


def test_a_failed_install_fails_the_run_with_pips_error(project, tmp_path):
    requirements = tmp_path / "requirements.txt"
    requirements.write_text(f"{tmp_path / 'no_such_package-1.0-py3-none-any.whl'}\n")
    env = Environment.from_pip_requirements("broken", str(requirements))
    project.script("uses.py", USES_PACKAGE)
    run = project.exp.submit(ScriptRunConfig(str(project.root), "uses.py", environment=env))
    details = run.wait_for_completion(raise_on_error=False)
    assert details["status"] == "Failed"
    error = details["error"]["error"]
    assert error["code"] == "EnvironmentBuildFailed"
    assert "pip install failed" in error["message"] and "no_such_package" in error["message"]
    log = run.get_details_with_logs()["logFiles"]["system_logs/environment.txt"]
    assert "no_such_package" in log
    half_built = Path(project.ws._local_root()) / "envs" / env.requirements_hash()
    assert not half_built.exists()  # not left on disk until a later build


def test_cancel_while_the_environment_is_built_stops_the_build(project, tmp_path):
    """The build is stopped at once and the run is Canceled, not Failed by the build."""
    requirements = tmp_path / "requirements.txt"
    requirements.write_text(f"{tmp_path / 'no_such_package-1.0-py3-none-any.whl'}\n")
    env = Environment.from_pip_requirements("slow", str(requirements))
    project.script("uses.py", USES_PACKAGE)
    run = project.exp.submit(ScriptRunConfig(str(project.root), "uses.py", environment=env))
    wait_until(lambda: run.get_status() == "Preparing", timeout=30)
    run.cancel()
    details = run.wait_for_completion(wait_post_processing=True, raise_on_error=False)
    assert details["status"] == "Canceled", details.get("error")
    log = run.get_details_with_logs()["logFiles"]["system_logs/environment.txt"]
    assert "stopped" in log
    half_built = Path(project.ws._local_root()) / "envs" / env.requirements_hash()
    assert not half_built.exists()


def test_from_pip_requirements_needs_a_readable_file(tmp_path):
    with pytest.raises(UserError, match="cannot read requirements file"):
        Environment.from_pip_requirements("x", str(tmp_path / "missing.txt"))
    with pytest.raises(UserError, match="from_pip_requirements"):
        Environment.from_conda_specification("x", "environment.yml")


def test_user_managed_interpreter(project):
    env = Environment("mine")
    env.python.user_managed_dependencies = True
    env.python.interpreter_path = sys.executable
    project.script("which.py", "import sys\nprint('python is', sys.executable)\n")
    run = project.exp.submit(ScriptRunConfig(str(project.root), "which.py", environment=env))
    assert run.wait_for_completion()["status"] == "Completed"
    assert f"python is {sys.executable}" in project.log_text(run)
    assert run.get_details()["runDefinition"]["environment"]["python"] == {
        "userManagedDependencies": True,
        "interpreterPath": sys.executable,
    }


def test_run_configuration_saves_and_loads_yaml(tmp_path):
    rc = RunConfiguration(script="train.py", arguments=["--alpha", 0.5])
    rc.max_run_duration_seconds = 60
    rc.environment_variables["SEED"] = "3"
    rc.history.directories_to_watch = ["logs", "tb"]
    rc.environment = Environment("env")
    rc.environment.python.pip_requirements = ["numpy>=1.24"]
    path = rc.save(str(tmp_path), name="local")
    assert path == str(tmp_path / ".runyard" / "local.runconfig")
    text = Path(path).read_text()
    assert "maxRunDurationSeconds: 60" in text and "directoriesToWatch" in text
    loaded = RunConfiguration.load(str(tmp_path), "local")
    assert loaded.to_dict() == rc.to_dict()
    assert RunConfiguration.load(path).script == "train.py"
    explicit = rc.save(str(tmp_path / "other.yml"))
    assert RunConfiguration.load(explicit).arguments == ["--alpha", 0.5]
    config = ScriptRunConfig(str(tmp_path), run_config=loaded)
    assert config.script == "train.py" and config.arguments == ["--alpha", 0.5]


def test_run_configuration_errors(tmp_path):
    with pytest.raises(UserError, match="without a name"):
        RunConfiguration().save(str(tmp_path))
    with pytest.raises(UserError, match="Failed to load RunConfiguration"):
        RunConfiguration.load(str(tmp_path), "nothing")
    (tmp_path / "bad.runconfig").write_text("script: [unclosed\n")
    with pytest.raises(UserError, match="not valid YAML"):
        RunConfiguration.load(str(tmp_path / "bad.runconfig"))
    with pytest.warns(UserWarning, match="ignored because run_config"):
        ScriptRunConfig(
            str(tmp_path), "x.py", run_config=RunConfiguration(), environment=Environment()
        )


USES_THE_SDK = """
import sys
import click, pathspec, psutil, yaml   # runyard's own dependencies
from runyard import Run, ScriptRunConfig
run = Run.get_context()
child = run.submit_child(ScriptRunConfig(".", "child.py"))   # a supervisor in this venv
details = child.wait_for_completion(raise_on_error=False)
run.log("child_status", details["status"])
print("parent ran in", sys.prefix)
"""

CHILD_IN_VENV = """
import sys
import psutil
from runyard import Run
Run.get_context().log("child_prefix", sys.prefix)
"""


def test_a_script_in_a_pip_environment_can_use_the_whole_sdk(project, tmp_path):
    wheel = _wheel(tmp_path)
    requirements = tmp_path / "requirements.txt"
    requirements.write_text(f"{wheel}\n")
    env = Environment.from_pip_requirements("sdk", str(requirements))
    project.script("parent.py", USES_THE_SDK)
    project.script("child.py", CHILD_IN_VENV)
    run = project.exp.submit(ScriptRunConfig(str(project.root), "parent.py", environment=env))
    details = run.wait_for_completion(raise_on_error=False)
    assert details["status"] == "Completed", run.get_details_with_logs()["logFiles"]
    assert run.get_metrics()["child_status"] == "Completed"
    (child,) = run.get_children()
    venv = child.get_metrics()["child_prefix"]
    assert venv != sys.prefix and venv.endswith(env.requirements_hash())
