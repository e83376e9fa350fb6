"""
nnkernels compiled kernels (use the nnkernels package, not this module)
"""
from __future__ import annotations
import collections.abc
import numpy
import numpy.typing
import typing
__all__: list[str] = ['CUDA_COMPILED', 'adagrad_step', 'adam_step', 'batchnorm_backward', 'batchnorm_backward_elemt', 'batchnorm_backward_reduce', 'batchnorm_check_training_count', 'batchnorm_forward', 'batchnorm_merge_stats', 'batchnorm_normalize', 'batchnorm_stats', 'build_info', 'check_optimizer_scalars', 'clip_grad_norm', 'cuda_device_count', 'cuda_device_name', 'cuda_synchronize', 'ema_update', 'empty_result_cache', 'get_isa', 'get_num_threads', 'init_fill', 'layernorm_backward', 'layernorm_forward', 'leaky_relu', 'leaky_relu_backward', 'optimizer_param_list', 'philox4x32_10', 'prep_affine', 'prep_centered_gram', 'prep_col_quantiles', 'prep_col_stats', 'prep_nan_col_stats', 'prep_normalize', 'relu', 'relu_backward', 'reset_isa', 'result_cache_info', 'rmsprop_step', 'set_isa', 'set_num_threads', 'set_result_cache_limit', 'sgd_step', 'sigmoid', 'sigmoid_backward', 'softmax_cross_entropy', 'stream_convert', 'stream_copy', 'stream_triad', 'tanh', 'tanh_backward']
def adagrad_step(params: typing.Any, grads: typing.Any, sum_sq: typing.Any, lr: typing.Any, eps: typing.Any, weight_decay: typing.Any, maximize: typing.Any, master_params: typing.Any = None, stochastic_rounding: typing.Any = False, seed: typing.Any = None) -> None:
    ...
def adam_step(params: typing.Any, grads: typing.Any, exp_avg: typing.Any, exp_avg_sq: typing.Any, step: typing.Any, lr: typing.Any, beta1: typing.Any, beta2: typing.Any, eps: typing.Any, weight_decay: typing.Any, decoupled_weight_decay: typing.Any, max_exp_avg_sq: typing.Any, maximize: typing.Any, master_params: typing.Any = None, stochastic_rounding: typing.Any = False, seed: typing.Any = None) -> None:
    ...
def batchnorm_backward(dout: typing.Any, x: typing.Any, gamma: typing.Any, mean: typing.Any, rstd: typing.Any, activation: typing.Any, y: typing.Any, negative_slope: typing.SupportsFloat | typing.SupportsIndex, out: typing.Any) -> tuple:
    ...
def batchnorm_backward_elemt(dout: typing.Any, x: typing.Any, gamma: typing.Any, mean: typing.Any, rstd: typing.Any, sum_dout: typing.Any, sum_dout_xhat: typing.Any, count: typing.Any, activation: typing.Any, y: typing.Any, negative_slope: typing.SupportsFloat | typing.SupportsIndex) -> typing.Any:
    ...
def batchnorm_backward_reduce(dout: typing.Any, x: typing.Any, mean: typing.Any, rstd: typing.Any, activation: typing.Any, y: typing.Any, negative_slope: typing.SupportsFloat | typing.SupportsIndex) -> tuple:
    ...
def batchnorm_check_training_count(shape: collections.abc.Sequence[typing.SupportsInt], count: typing.SupportsInt) -> None:
    ...
def batchnorm_forward(x: typing.Any, gamma: typing.Any, beta: typing.Any, training: bool, running_mean: typing.Any, running_var: typing.Any, momentum: typing.SupportsFloat | typing.SupportsIndex, eps: typing.SupportsFloat | typing.SupportsIndex, unbiased_running_var: bool, activation: typing.Any, negative_slope: typing.SupportsFloat | typing.SupportsIndex, out: typing.Any) -> tuple:
    ...
def batchnorm_merge_stats(counts: typing.Any, means: typing.Any, m2s: typing.Any) -> tuple:
    ...
def batchnorm_normalize(x: typing.Any, mean: typing.Any, rstd: typing.Any, gamma: typing.Any, beta: typing.Any, activation: typing.Any, negative_slope: typing.SupportsFloat | typing.SupportsIndex, out: typing.Any) -> typing.Any:
    ...
def batchnorm_stats(x: typing.Any) -> tuple:
    ...
def build_info() -> dict:
    """
    Build and runtime configuration.
    """
def check_optimizer_scalars(op: str, kw: dict) -> None:
    ...
def clip_grad_norm(grads: typing.Any, max_norm: typing.Any) -> typing.Any:
    ...
def cuda_device_count() -> int:
    ...
def cuda_device_name(device: typing.SupportsInt | typing.SupportsIndex) -> str:
    ...
def cuda_synchronize(stream: typing.SupportsInt | typing.SupportsIndex) -> None:
    ...
def ema_update(averages: typing.Any, params: typing.Any, decay: typing.Any, stochastic_rounding: typing.Any = False, seed: typing.Any = None) -> None:
    ...
def empty_result_cache() -> None:
    """
    Return every idle result block to the operating system.
    """
def get_isa() -> str:
    ...
def get_num_threads() -> int:
    ...
def init_fill(out: typing.Any, shape: collections.abc.Sequence[typing.SupportsInt | typing.SupportsIndex], dtype: typing.Any, dist: typing.SupportsInt | typing.SupportsIndex, seed: typing.SupportsInt | typing.SupportsIndex, a: typing.SupportsFloat | typing.SupportsIndex, b: typing.SupportsFloat | typing.SupportsIndex) -> typing.Any:
    """
    Fill `out` (or a new float32/float64 NumPy array of `shape` and `dtype` when out is None) with Philox4x32-10 uniform (dist=0: a + b*u) or normal (dist=1: a + b*z) numbers; element i of the C-order flattening depends only on (seed, i). Returns the filled array.
    """
def layernorm_backward(dout: typing.Any, x: typing.Any, gamma: typing.Any, mean: typing.Any, rstd: typing.Any, activation: typing.Any, y: typing.Any, negative_slope: typing.SupportsFloat | typing.SupportsIndex, out: typing.Any) -> tuple:
    ...
def layernorm_forward(x: typing.Any, gamma: typing.Any, beta: typing.Any, eps: typing.SupportsFloat | typing.SupportsIndex, activation: typing.Any, negative_slope: typing.SupportsFloat | typing.SupportsIndex, out: typing.Any) -> tuple:
    ...
def leaky_relu(x: typing.Any, negative_slope: typing.SupportsFloat | typing.SupportsIndex = 0.01, out: typing.Any = None) -> numpy.ndarray:
    ...
def leaky_relu_backward(dout: typing.Any, x: typing.Any, negative_slope: typing.SupportsFloat | typing.SupportsIndex = 0.01, out: typing.Any = None) -> numpy.ndarray:
    ...
def optimizer_param_list(params: typing.Any) -> list:
    ...
def philox4x32_10(ctr: collections.abc.Sequence[typing.SupportsInt | typing.SupportsIndex], key: collections.abc.Sequence[typing.SupportsInt | typing.SupportsIndex]) -> list[int]:
    ...
def prep_affine(X: typing.Any, shift: typing.Any, scale: typing.Any, offset: typing.Any, out: typing.Any = None) -> typing.Any:
    """
    out = (X - shift) * scale + offset, per column, in float64 arithmetic; out None: a new array of X's library in X's memory order. For a CUDA X the parameters are float64 arrays on X's device. Returns out
    """
def prep_centered_gram(X: typing.Any, float64_products: bool = False) -> tuple:
    """
    (mean, M) of a 2-D float32/float64 array: column means and M = (X - mean)^T (X - mean) in float64, in one blocked pass (divide by n - 1 for the covariance). CPU only.
    """
def prep_col_quantiles(X: typing.Any, q: collections.abc.Sequence[typing.SupportsFloat | typing.SupportsIndex]) -> typing.Any:
    """
    percentiles (NumPy 'linear', NaN skipped as np.nanpercentile) of each column by quickselect: array (len(q), n_features); ValueError for infinite values. CPU only.
    """
def prep_col_stats(X: typing.Any, flags: typing.SupportsInt | typing.SupportsIndex) -> tuple:
    """
    (mean, m2, min, max, finite) of the columns of a 2-D array; flags: 1 mean, 2 mean+M2, 4 min/max; finite: X holds no NaN or infinity. Statistics are float64 arrays of X's library on X's device (None where flags do not ask for them); min/max skip NaN. For a CUDA X (CuPy, torch) nothing is copied to the host and finite is None.
    """
def prep_nan_col_stats(X: typing.Any, flags: typing.SupportsInt | typing.SupportsIndex, sample_weight: typing.Any = None, prior: typing.Any = None) -> tuple:
    """
    (count, mean, m2, min, max, finite) of the columns of a 2-D host array with NaN skipped (scikit-learn's scalers): count[j] = number (weight sum) of non-NaN values of column j; flags: 1 mean, 2 mean+M2, 4 min/max; sample_weight: one weight per row; prior: (count, mean, m2) of earlier data, merged first; finite: X holds no infinity. CPU only.
    """
def prep_normalize(X: typing.Any, norm: str, out: typing.Any = None) -> tuple:
    """
    out = rows of X divided by their norm (0 -> 1); out None: a new array of X's library in X's memory order. Returns (out, norms), norms a float64 array on X's device
    """
def relu(x: typing.Any, out: typing.Any = None) -> numpy.ndarray:
    ...
def relu_backward(dout: typing.Any, x: typing.Any, out: typing.Any = None) -> numpy.ndarray:
    ...
def reset_isa() -> None:
    """
    Back to the level chosen at import (NNKERNELS_ISA, else the best this CPU supports).
    """
def result_cache_info() -> dict:
    """
    Statistics of the result cache: limit, bytes_cached, blocks, hits, misses, evictions, bytes_in_use, blocks_in_use, min_result_bytes.
    """
def rmsprop_step(params: typing.Any, grads: typing.Any, sq_avg: typing.Any, lr: typing.Any, alpha: typing.Any, eps: typing.Any, weight_decay: typing.Any, eps_in_sqrt: typing.Any, maximize: typing.Any, momentum: typing.Any = 0.0, velocity: typing.Any = None, centered: typing.Any = False, grad_avg: typing.Any = None, master_params: typing.Any = None, stochastic_rounding: typing.Any = False, seed: typing.Any = None) -> None:
    ...
def set_isa(isa: str) -> None:
    """
    Select the instruction-set level of the CPU kernels ('baseline', 'avx2', 'avx512').
    """
def set_result_cache_limit(limit: typing.Any) -> None:
    """
    Bytes of idle result blocks kept for reuse; idle blocks beyond it are returned to the OS. 0 disables.
    """
def set_num_threads(n: typing.SupportsInt | typing.SupportsIndex) -> None:
    ...
def sgd_step(params: typing.Any, grads: typing.Any, lr: typing.Any, momentum: typing.Any, velocity: typing.Any, nesterov: typing.Any, dampening: typing.Any, weight_decay: typing.Any, maximize: typing.Any, master_params: typing.Any = None, stochastic_rounding: typing.Any = False, seed: typing.Any = None) -> None:
    ...
def sigmoid(x: typing.Any, out: typing.Any = None) -> numpy.ndarray:
    ...
def sigmoid_backward(dout: typing.Any, y: typing.Any, out: typing.Any = None) -> numpy.ndarray:
    ...
def softmax_cross_entropy(logits: typing.Any, labels: typing.Any, out: typing.Any = None) -> tuple:
    ...
def stream_convert(a: typing.Any, b: typing.Any) -> None:
    """
    b[:] = a in b's dtype (float32, float16, bfloat16; C-contiguous), rounded to nearest even: the conversions every kernel uses on 16-bit storage, at the selected ISA level
    """
def stream_copy(a: numpy.typing.NDArray[numpy.float32], b: numpy.typing.NDArray[numpy.float32]) -> None:
    """
    b[:] = a (float32, C-contiguous), streaming stores for large arrays
    """
def stream_triad(a: numpy.typing.NDArray[numpy.float32], b: numpy.typing.NDArray[numpy.float32], c: numpy.typing.NDArray[numpy.float32], scalar: typing.SupportsFloat | typing.SupportsIndex) -> None:
    """
    c[:] = a + scalar * b (float32)
    """
def tanh(x: typing.Any, out: typing.Any = None) -> numpy.ndarray:
    ...
def tanh_backward(dout: typing.Any, y: typing.Any, out: typing.Any = None) -> numpy.ndarray:
    ...
CUDA_COMPILED: bool = True
