from conftest import ROOT


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    command = next(line for line in ci if "pytest" in line)
    assert command in readme
    # The CPU build only: "+cpu" is not on PyPI, whose Linux 2.13.0 is the CUDA build.
    assert "pip install --no-deps 'torch==2.13.0+cpu' --extra-index-url " \
        "https://download.pytorch.org/whl/cpu && pip install -e" in command
