"""Build configuration: NNKERNELS_CUDA=AUTO compiles the CUDA kernels only when a GPU is visible
(issue 13, item 15). Runs CMake's script mode on cmake/gpu_visible.cmake with a stand-in nvidia-smi."""
from __future__ import annotations

import os
import shutil
import stat
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "cmake", "gpu_visible.cmake")

pytestmark = pytest.mark.skipif(shutil.which("cmake") is None or not os.path.exists(SCRIPT),
                                reason="needs cmake and the source tree")


def _probe(tmp_path, smi_body=None, device_node=None) -> str:
    smi = tmp_path / "nvidia-smi"  # a stand-in, or (smi_body None) a path that does not exist
    if smi_body is not None:
        smi.write_text("#!/bin/sh\n" + smi_body + "\n")
        smi.chmod(smi.stat().st_mode | stat.S_IEXEC)
    node = device_node or str(tmp_path / "no-such-device")
    proc = subprocess.run([shutil.which("cmake"), f"-DNK_NVIDIA_DEVICE_NODE={node}", f"-DNK_NVIDIA_SMI={smi}",
                           "-P", SCRIPT], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return proc.stderr.strip()  # message() without a mode writes to stderr


def test_no_nvidia_smi_and_no_device_node_means_no_gpu(tmp_path):
    assert _probe(tmp_path) == "gpu_visible=OFF"


def test_nvidia_smi_listing_a_gpu(tmp_path):
    assert _probe(tmp_path, 'echo "GPU 0: NVIDIA H200 (UUID: GPU-0123)"') == "gpu_visible=ON"


def test_nvidia_smi_that_fails_or_lists_none(tmp_path):
    assert _probe(tmp_path, 'echo "NVIDIA-SMI has failed because it could not communicate with the driver"; exit 9') \
        == "gpu_visible=OFF"
    other = tmp_path / "other"
    other.mkdir()
    assert _probe(other, "exit 0") == "gpu_visible=OFF"  # succeeds but lists no GPU


def test_device_node(tmp_path):
    node = tmp_path / "nvidia0"
    node.write_text("")
    assert _probe(tmp_path, device_node=str(node)) == "gpu_visible=ON"


def test_cmakelists_uses_the_probe_for_auto():
    with open(os.path.join(ROOT, "CMakeLists.txt"), encoding="utf-8") as f:
        text = f.read()
    assert "include(${CMAKE_CURRENT_SOURCE_DIR}/cmake/gpu_visible.cmake)" in text
    assert 'nk_gpu_visible(_nk_gpu_visible)' in text
