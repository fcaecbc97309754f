"""The pure functions the modules call, like ``torch.nn.functional``.

Each area lives in its own file; this package re-exports the torch-named functions.
"""

from fparam import _torch_names
from fparam.nn.functional.activation import (
    elu,
    gelu,
    leaky_relu,
    log_softmax,
    relu,
    sigmoid,
    silu,
    softmax,
    tanh,
)
from fparam.nn.functional.conv import (
    conv1d,
    conv2d,
    conv3d,
    conv_transpose1d,
    conv_transpose2d,
    conv_transpose3d,
    pad,
)
from fparam.nn.functional.ctc import ctc_loss
from fparam.nn.functional.dropout import (
    alpha_dropout,
    dropout,
    dropout1d,
    dropout2d,
    dropout3d,
    feature_alpha_dropout,
)
from fparam.nn.functional.linear import linear
from fparam.nn.functional.loss import (
    binary_cross_entropy,
    binary_cross_entropy_with_logits,
    cosine_embedding_loss,
    cross_entropy,
    gaussian_nll_loss,
    hinge_embedding_loss,
    huber_loss,
    kl_div,
    l1_loss,
    margin_ranking_loss,
    mse_loss,
    multi_margin_loss,
    multilabel_margin_loss,
    multilabel_soft_margin_loss,
    nll_loss,
    poisson_nll_loss,
    smooth_l1_loss,
    soft_margin_loss,
    triplet_margin_loss,
    triplet_margin_with_distance_loss,
)
from fparam.nn.functional.normalization import (
    batch_norm,
    batch_norm_stats,
    group_norm,
    instance_norm,
    instance_norm_stats,
    layer_norm,
    local_response_norm,
    rms_norm,
)
from fparam.nn.functional.shape import flatten, unflatten

__all__ = [
    "conv1d",
    "conv2d",
    "conv3d",
    "conv_transpose1d",
    "conv_transpose2d",
    "conv_transpose3d",
    "pad",
]

__all__ += [
    "binary_cross_entropy",
    "binary_cross_entropy_with_logits",
    "cross_entropy",
    "elu",
    "flatten",
    "gelu",
    "l1_loss",
    "leaky_relu",
    "linear",
    "log_softmax",
    "mse_loss",
    "nll_loss",
    "relu",
    "sigmoid",
    "silu",
    "softmax",
    "tanh",
    "unflatten",
]

__all__ += [
    "alpha_dropout",
    "batch_norm",
    "batch_norm_stats",
    "dropout",
    "dropout1d",
    "dropout2d",
    "dropout3d",
    "feature_alpha_dropout",
    "group_norm",
    "instance_norm",
    "instance_norm_stats",
    "layer_norm",
    "local_response_norm",
    "rms_norm",
]

__all__ += [
    "cosine_embedding_loss",
    "ctc_loss",
    "gaussian_nll_loss",
    "hinge_embedding_loss",
    "huber_loss",
    "kl_div",
    "margin_ranking_loss",
    "multi_margin_loss",
    "multilabel_margin_loss",
    "multilabel_soft_margin_loss",
    "poisson_nll_loss",
    "smooth_l1_loss",
    "soft_margin_loss",
    "triplet_margin_loss",
    "triplet_margin_with_distance_loss",
]

# Python calls this only for a name the module does not define: a torch name says "not yet".
__getattr__ = _torch_names.missing_attribute_hook(
    __name__, "torch.nn.functional", _torch_names.FUNCTIONAL
)
