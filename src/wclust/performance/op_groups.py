"""The operator groups a profile reports time and activation bytes by, and the kinds of parameter bytes."""
from __future__ import annotations

GROUPS = ["matmul", "softmax/attention", "layer norm", "activation", "elementwise", "copy/reshape",
          "convolution", "other"]
PARAM_KINDS = ["matmul weights", "embeddings", "norms", "biases", "other"]

_MATMUL = {"mm", "addmm", "bmm", "baddbmm", "matmul", "linear", "addmv", "mv", "dot", "einsum", "addbmm",
           "_addmm_activation", "lut_linear", "_weight_int8pack_mm", "_int_mm", "mkldnn_linear"}
_ATTN = {"softmax", "_softmax", "log_softmax", "_log_softmax", "_safe_softmax", "scaled_dot_product_attention"}
_NORM = {"layer_norm", "native_layer_norm", "group_norm", "native_group_norm", "batch_norm", "_batch_norm_impl_index",
         "native_batch_norm", "_native_batch_norm_legit_no_training", "rms_norm", "_fused_rms_norm", "instance_norm"}
_ACT = {"gelu", "relu", "relu_", "silu", "silu_", "tanh", "sigmoid", "hardswish", "hardsigmoid", "mish", "elu",
        "leaky_relu", "softplus", "erf", "glu", "quick_gelu"}
_ELEM = {"add", "add_", "sub", "sub_", "mul", "mul_", "div", "div_", "pow", "sqrt", "rsqrt", "exp", "log", "neg",
         "mean", "sum", "where", "masked_fill", "masked_fill_", "clamp", "clamp_", "dropout", "abs", "maximum",
         "minimum", "max", "min", "reciprocal", "square", "lt", "gt", "le", "ge", "eq", "ne", "bitwise_and",
         "__and__", "__rshift__", "bitwise_right_shift", "cumsum", "fill_", "zero_", "rsub", "addcmul", "var_mean"}
_COPY = {"view", "reshape", "permute", "transpose", "contiguous", "clone", "copy_", "cat", "stack", "flatten",
         "expand", "t", "split", "chunk", "unsqueeze", "squeeze", "select", "slice", "to", "_to_copy", "empty",
         "empty_like", "as_strided", "index", "index_select", "embedding", "narrow", "unflatten", "detach",
         "zeros", "ones", "arange", "_unsafe_view", "alias", "lift_fresh", "new_empty", "new_zeros", "full",
         "index_copy", "index_put_", "gather", "repeat", "unbind", "split_with_sizes", "resize_", "empty_strided",
         "unfold", "pad", "constant_pad_nd", "flip", "roll", "embedding_bag", "_reshape_alias", "contiguous_"}


def op_group(name: str) -> str:
    """The operator group of an op name such as ``aten::addmm`` or ``wclust::lut_linear``."""
    base = name.split("::")[-1].split(".")[0]
    if base in _MATMUL or name.startswith("wclust::"):
        return "matmul"
    if base.startswith("conv") or base in ("_convolution", "mkldnn_convolution", "_nnpack_spatial_convolution"):
        return "convolution"
    if base in _ATTN or "scaled_dot_product" in base:
        return "softmax/attention"
    if base in _NORM:
        return "layer norm"
    if base in _ACT:
        return "activation"
    if base in _ELEM:
        return "elementwise"
    if base in _COPY:
        return "copy/reshape"
    return "other"
