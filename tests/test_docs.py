"""Documentation that a newcomer copies: every README Python block runs when pasted alone, the README's
first commands are what CI runs, and the public step/activation/loss functions document every argument
(issue 13, items 15 and 16)."""
from __future__ import annotations

import ast
import inspect
import os
import re
import subprocess
import sys

import pytest

import nnkernels as nk

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
README = os.path.join(ROOT, "README.md")


def _readme() -> str:
    with open(README, encoding="utf-8") as f:
        return f.read()


def _python_blocks() -> list:
    return re.findall(r"^```python\n(.*?)^```", _readme(), re.S | re.M)


def test_readme_has_python_blocks():
    assert len(_python_blocks()) >= 3


@pytest.mark.parametrize("index", range(len(_python_blocks())))
def test_readme_python_block_runs_alone(index, tmp_path):
    """Each block in a fresh interpreter (a fresh namespace, as when pasted into a new session)."""
    code = _python_blocks()[index]
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    # the nnkernels this test imported (installed, or the sources under PYTHONPATH=python)
    package_parent = os.path.dirname(os.path.dirname(os.path.abspath(nk.__file__)))
    env["PYTHONPATH"] = os.pathsep.join([package_parent] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, f"README python block {index}:\n{code}\n{proc.stderr}"


def _first_commands() -> list:
    """The commands of the README's first code block (the two lines a newcomer runs)."""
    block = re.search(r"^```\n(.*?)^```", _readme(), re.S | re.M).group(1)
    return [line.split("#")[0].strip() for line in block.splitlines() if line.strip()]


def test_readme_starts_with_the_two_commands_and_ci_runs_them():
    head = _readme().split("\n## ", 1)[0]
    assert head.index("```") < 400  # the commands come first
    install, tests = _first_commands()
    assert install.startswith('pip install ".[') and install.endswith("python -m nnkernels bench")
    assert tests == "python -m pytest"  # no second build
    extra = re.match(r'pip install "\.\[(\w+)\]"', install).group(1)
    with open(os.path.join(ROOT, "pyproject.toml"), encoding="utf-8") as f:
        pyproject = f.read()
    deps = re.search(r"^%s = \[(.*?)\]\n" % extra, pyproject, re.M | re.S).group(1)
    for need in ("torch==2.13.0", "pytest", "hypothesis", "scikit-learn", "threadpoolctl", "matplotlib", "mpi4py"):
        assert need in deps, need
    with open(os.path.join(ROOT, ".ci", "run"), encoding="utf-8") as f:
        ci = f.read()
    assert "NNKERNELS_CUDA=ON" in ci  # CI compiles the CUDA code even without a GPU
    i_install = ci.index(f'pip install ".[{extra}]"')
    i_tests = ci.index("python -m pytest", i_install)
    assert i_install < i_tests and ci.index("python -m nnkernels bench", i_install) < i_tests
    assert 'pip install ".[test]"' not in ci and 'pip install ".[bench]"' not in ci  # built once


# ----------------------------------------------------------------------------- docstrings

DOCUMENTED = [nk.sgd_step, nk.adagrad_step, nk.rmsprop_step, nk.adam_step, nk.ema_update, nk.clip_grad_norm,
              nk.relu, nk.relu_backward, nk.leaky_relu, nk.leaky_relu_backward, nk.sigmoid, nk.sigmoid_backward,
              nk.tanh, nk.tanh_backward, nk.softmax_cross_entropy]


def _section(doc: str, title: str) -> str:
    m = re.search(r"^%s\n-+\n(.*?)(?=^\S[^\n]*\n-+\n|\Z)" % title, doc, re.S | re.M)
    return m.group(1) if m else ""


@pytest.mark.parametrize("fn", DOCUMENTED, ids=lambda f: f.__name__)
def test_docstring_documents_every_argument_and_default(fn):
    doc = inspect.cleandoc(fn.__doc__ or "")
    params = _section(doc, "Parameters")
    assert params, f"{fn.__name__}: no Parameters section"
    assert _section(doc, "Returns"), f"{fn.__name__}: no Returns section"
    entries = dict(re.findall(r"^(\w+) : (.*)$", params, re.M))
    sig = inspect.signature(fn)
    assert list(entries) == list(sig.parameters), fn.__name__  # every argument, in order, nothing else
    for name, p in sig.parameters.items():
        m = re.search(r"default=([^,\s]+)", entries[name])
        if p.default is inspect.Parameter.empty:
            assert m is None, f"{fn.__name__}({name}): documented default but none in the signature"
        else:
            assert m, f"{fn.__name__}({name}): default {p.default!r} not documented"
            assert ast.literal_eval(m.group(1)) == p.default, f"{fn.__name__}({name})"
        # every entry has a description line under it
        assert re.search(r"^%s : .*\n {4}\S" % name, params, re.M), f"{fn.__name__}({name}): no description"
