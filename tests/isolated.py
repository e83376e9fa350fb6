"""Run a snippet in a fresh interpreter: a crash (segfault, abort) or a hang is then a failed
test with the child's output, not a dead or stuck test run."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap


def run_isolated(code: str, timeout: float = 60.0, **env: str) -> subprocess.CompletedProcess:
    """Run ``code`` with this interpreter; returns the completed process (text output).

    A child still running after ``timeout`` seconds is killed and reported as a failure
    (AssertionError naming the hang), so a deadlock cannot stall the suite."""
    full_env = dict(os.environ)
    full_env.update(env)
    # Own process group: on a hang, the child and anything it forked are killed together.
    proc = subprocess.Popen([sys.executable, "-c", textwrap.dedent(code)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=full_env, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        raise AssertionError(f"child did not finish within {timeout} s (hang)\nstdout:\n{out}\nstderr:\n{err}") from None
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def assert_clean_exit(r: subprocess.CompletedProcess) -> None:
    """The child exited with status 0; a signal (negative status) is named in the message."""
    if r.returncode < 0:
        raise AssertionError(f"child killed by {signal.Signals(-r.returncode).name}\nstdout:\n{r.stdout}\n"
                             f"stderr:\n{r.stderr}")
    assert r.returncode == 0, f"child exited with {r.returncode}\nstdout:\n{r.stdout}\nstderr:\n{r.stderr}"
