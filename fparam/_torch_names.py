"""The names torch defines that fparam may not define yet, for a clear error when one is reached.

``fparam.nn``, ``fparam.nn.functional``, ``fparam.optim`` and ``fparam.optim.lr_scheduler`` each
have a module-level ``__getattr__`` that Python calls only for a name the module does not define.
A name in the matching list below is a torch name fparam has not implemented yet: it raises
``AttributeError`` saying so (``hasattr`` is still ``False``). Any other name gets Python's usual
``AttributeError``, so a typo is reported as a typo.

The lists are torch 2.13's, hard-coded (fparam never imports torch); ``tests/
test_unimplemented_names.py`` checks them against the installed torch so they cannot rot:

* ``NN``: every public class in ``torch.nn`` (modules, ``Parameter``, ``Buffer``, ...) and the
  submodules a training script reaches through it (``attention``, ``parallel``, ``utils``).
* ``FUNCTIONAL``: every public function in ``torch.nn.functional`` (its private helpers such as
  ``has_torch_function`` left out).
* ``OPTIM``: ``torch.optim.__all__``.
* ``LR_SCHEDULER``: ``torch.optim.lr_scheduler.__all__``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NoReturn


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


NN = _words(
    """
    AdaptiveAvgPool1d AdaptiveAvgPool2d AdaptiveAvgPool3d AdaptiveLogSoftmaxWithLoss
    AdaptiveMaxPool1d AdaptiveMaxPool2d AdaptiveMaxPool3d AlphaDropout AvgPool1d AvgPool2d
    AvgPool3d BCELoss BCEWithLogitsLoss BatchNorm1d BatchNorm2d BatchNorm3d Bilinear Buffer CELU
    CTCLoss ChannelShuffle CircularPad1d CircularPad2d CircularPad3d ConstantPad1d ConstantPad2d
    ConstantPad3d Container Conv1d Conv2d Conv3d ConvTranspose1d ConvTranspose2d ConvTranspose3d
    CosineEmbeddingLoss CosineSimilarity CrossEntropyLoss CrossMapLRN2d DataParallel Dropout
    Dropout1d Dropout2d Dropout3d ELU Embedding EmbeddingBag FeatureAlphaDropout Flatten Fold
    FractionalMaxPool2d FractionalMaxPool3d GELU GLU GRU GRUCell GaussianNLLLoss GroupNorm
    Hardshrink Hardsigmoid Hardswish Hardtanh HingeEmbeddingLoss HuberLoss Identity
    InstanceNorm1d InstanceNorm2d InstanceNorm3d KLDivLoss L1Loss LPPool1d LPPool2d LPPool3d
    LSTM LSTMCell LayerNorm LazyBatchNorm1d LazyBatchNorm2d LazyBatchNorm3d LazyConv1d
    LazyConv2d LazyConv3d LazyConvTranspose1d LazyConvTranspose2d LazyConvTranspose3d
    LazyInstanceNorm1d LazyInstanceNorm2d LazyInstanceNorm3d LazyLinear LeakyReLU Linear
    LinearCrossEntropyLoss LinearCrossEntropyOptions LocalResponseNorm LogSigmoid LogSoftmax
    MSELoss MarginRankingLoss MaxPool1d MaxPool2d MaxPool3d MaxUnpool1d MaxUnpool2d MaxUnpool3d
    Mish Module ModuleDict ModuleList MultiLabelMarginLoss MultiLabelSoftMarginLoss
    MultiMarginLoss MultiheadAttention NLLLoss NLLLoss2d PReLU PairwiseDistance Parameter
    ParameterDict ParameterList PixelShuffle PixelUnshuffle PoissonNLLLoss RMSNorm RNN RNNBase
    RNNCell RNNCellBase RReLU ReLU ReLU6 ReflectionPad1d ReflectionPad2d ReflectionPad3d
    ReplicationPad1d ReplicationPad2d ReplicationPad3d SELU Sequential SiLU Sigmoid SmoothL1Loss
    SoftMarginLoss Softmax Softmax2d Softmin Softplus Softshrink Softsign SyncBatchNorm Tanh
    Tanhshrink Threshold Transformer TransformerDecoder TransformerDecoderLayer
    TransformerEncoder TransformerEncoderLayer TripletMarginLoss TripletMarginWithDistanceLoss
    Unflatten Unfold UninitializedBuffer UninitializedParameter Upsample UpsamplingBilinear2d
    UpsamplingNearest2d ZeroPad1d ZeroPad2d ZeroPad3d attention parallel utils
    """
)

FUNCTIONAL = _words(
    """
    adaptive_avg_pool1d adaptive_avg_pool2d adaptive_avg_pool3d adaptive_max_pool1d
    adaptive_max_pool1d_with_indices adaptive_max_pool2d adaptive_max_pool2d_with_indices
    adaptive_max_pool3d adaptive_max_pool3d_with_indices affine_grid alpha_dropout avg_pool1d
    avg_pool2d avg_pool3d batch_norm bilinear binary_cross_entropy
    binary_cross_entropy_with_logits celu celu_ channel_shuffle conv1d conv2d conv3d conv_tbc
    conv_transpose1d conv_transpose2d conv_transpose3d cosine_embedding_loss cosine_similarity
    cross_entropy ctc_loss dropout dropout1d dropout2d dropout3d elu elu_ embedding
    embedding_bag feature_alpha_dropout fold fractional_max_pool2d
    fractional_max_pool2d_with_indices fractional_max_pool3d fractional_max_pool3d_with_indices
    gaussian_nll_loss gelu glu grid_sample group_norm grouped_mm gumbel_softmax hardshrink
    hardsigmoid hardswish hardtanh hardtanh_ hinge_embedding_loss huber_loss instance_norm
    interpolate kl_div l1_loss layer_norm leaky_relu leaky_relu_ linear linear_cross_entropy
    local_response_norm log_softmax logsigmoid lp_pool1d lp_pool2d lp_pool3d margin_ranking_loss
    max_pool1d max_pool1d_with_indices max_pool2d max_pool2d_with_indices max_pool3d
    max_pool3d_with_indices max_unpool1d max_unpool2d max_unpool3d mish mse_loss
    multi_head_attention_forward multi_margin_loss multilabel_margin_loss
    multilabel_soft_margin_loss native_channel_shuffle nll_loss normalize one_hot pad
    pairwise_distance pdist pixel_shuffle pixel_unshuffle poisson_nll_loss prelu relu relu6
    relu_ rms_norm rrelu rrelu_ scaled_dot_product_attention scaled_grouped_mm scaled_mm selu
    selu_ sigmoid silu smooth_l1_loss soft_margin_loss softmax softmin softplus softshrink
    softsign tanh tanhshrink threshold threshold_ triplet_margin_loss
    triplet_margin_with_distance_loss unfold upsample upsample_bilinear upsample_nearest
    """
)

OPTIM = _words(
    """
    ASGD Adadelta Adafactor Adagrad Adam AdamW Adamax LBFGS Muon NAdam Optimizer RAdam RMSprop
    Rprop SGD SparseAdam lr_scheduler swa_utils swap_in_optimizer_params_and_state
    """
)

LR_SCHEDULER = _words(
    """
    ChainedScheduler ConstantLR CosineAnnealingLR CosineAnnealingWarmRestarts CyclicLR
    ExponentialLR LRScheduler LambdaLR LinearLR MultiStepLR MultiplicativeLR OneCycleLR
    PolynomialLR ReduceLROnPlateau SequentialLR StepLR
    """
)


NOT_IMPLEMENTED_YET = (
    "module {module!r} has no attribute {name!r}: {torch_name} is not implemented yet in fparam "
    "(docs/porting-from-pytorch.md, section 'Coverage', lists what exists)."
)


def missing_attribute(module: str, name: str, torch_module: str, known: frozenset[str]) -> NoReturn:
    """Raise the ``AttributeError`` for ``module.name``, a name ``module`` does not define.

    Arguments:
        module: the fparam module's ``__name__`` (e.g. ``"fparam.nn"``).
        name: the attribute that was looked up.
        torch_module: the torch module it mirrors (e.g. ``"torch.nn"``).
        known: that torch module's names (one of the lists above).

    Raises:
        AttributeError: always; it says "not implemented yet in fparam" when torch has ``name``,
        and is Python's usual message otherwise.
    """
    if name in known:
        raise AttributeError(
            NOT_IMPLEMENTED_YET.format(
                module=module, name=name, torch_name=f"{torch_module}.{name}"
            ),
            name=name,
        )
    raise AttributeError(f"module {module!r} has no attribute {name!r}", name=name)


def missing_attribute_hook(
    module: str, torch_module: str, known: frozenset[str]
) -> Callable[[str], NoReturn]:
    """Return the module-level ``__getattr__`` of ``module``, which mirrors ``torch_module``.

    Arguments:
        module: the fparam module's ``__name__``.
        torch_module: the torch module it mirrors.
        known: that torch module's names (one of the lists above).

    Returns:
        A function of the attribute name that raises :func:`missing_attribute`'s error.
    """

    def __getattr__(name: str) -> NoReturn:
        missing_attribute(module, name, torch_module, known)

    return __getattr__
