"""GoogLeNet (Inception v1) in flax.linen, NHWC.

Two variants share one network definition and differ only in `architecture.VARIANTS`:
- "torchvision": numerically identical to torchvision 0.29.1's `googlenet` (BatchNorm,
  3x3 "5x5" branch, 2x2 pool after 4e, adaptive pools), so its weights load unchanged.
- "paper": BVLC Caffe's bvlc_googlenet, the topology the paper released (biased convs,
  LRN, true 5x5 branches, 3x3 pool after 4e, 5x5/3 average pool in the aux heads).

The network records the output of every stage it computes in a plain dict, by stage name
(`architecture.stage_names`); `capture=` hands the named ones back. That one mechanism serves
features for detection forks, the parity tool, the Table 1 summary and frozen backbones.
"""
from __future__ import annotations

import functools
from typing import Any, Callable, NamedTuple, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from googlenet_jax.model import architecture as arch
from googlenet_jax.model.blocks import AuxHead, ComputeForms, ConvBlock, Inception, layer_module
from googlenet_jax.model.input_spec import IMAGENET_MEAN, IMAGENET_STD


class GoogLeNetOutputs(NamedTuple):
    """Train-mode outputs; aux_logits1 is the head on 4a, aux_logits2 the head on 4d."""

    logits: Any
    aux_logits1: Any
    aux_logits2: Any


def _widened(block: arch.Block, multiplier: float) -> arch.Block:
    """The block with every convolution's width times `multiplier` (rounded, at least 1)."""
    if multiplier <= 0:
        raise ValueError(f"width_multiplier must be positive, got {multiplier}")
    return block._replace(parts=tuple(
        part._replace(layer=part.layer._replace(features=max(1, round(part.layer.features * multiplier))))
        if isinstance(part.layer, arch.Conv) else part for part in block.parts))


class Blocks(NamedTuple):
    """The module classes GoogLeNet builds its blocks with; a fork swaps one with
    `GoogLeNet(blocks=Blocks(conv=MyConvBlock))` (torchvision's `blocks=`), keeping the others.
    Each is constructed and called as the default one is; a convolution class keeps ConvBlock's
    `weights` and `activate`, which merged 1x1 convolutions call."""

    conv: Callable[..., nn.Module] = ConvBlock
    inception: Callable[..., nn.Module] = Inception
    aux_head: Callable[..., nn.Module] = AuxHead


class GoogLeNet(nn.Module):
    """GoogLeNet / Inception v1.

    Input: NHWC float images (N, H, W, 3). `apply(variables, x, train=False)` returns
    logits (N, num_classes) in float32 (float64 when dtype is float64). With `train=True`
    and `aux_logits=True` it returns `GoogLeNetOutputs(logits, aux_logits1, aux_logits2)`.
    Parameters are float32; `dtype` is the compute dtype. `bn_axis_name` averages
    BatchNorm statistics across devices under pmap.

    Looking inside, by stage name (`architecture.stage_names`: conv1, pool1, conv2, conv3,
    pool2, inception3a ... inception5b, avgpool, fc, aux1, aux2; lrn1/lrn2 in the paper
    variant; Inception parts as "inception4a/branch3x3"):
    - `capture=("inception4e", "inception5b")` returns `(output, {name: array})`, the output
      being what the call returns without capture. aux1/aux2 exist only where the aux heads
      run (train mode), and are absent from the dict otherwise;
    - `features_only=True` with `capture=...` returns only that dict and stops after the
      last stage asked for (no classifier): a backbone for detection/segmentation forks;
    - `features=True` (with `train=False`) returns the 1024-d globally pooled features
      (N, 1024) that feed the classifier, for transfer learning and retrieval.
    An unknown stage name is a ValueError listing the names.

    `batch_norm_folded=True` builds every BatchNorm block as a biased convolution (eval only):
    the network `model.folding.fold_batch_norm` returns with its folded weights.

    Built from a config as `GoogLeNet(num_classes=..., **config.model)`: every field a run
    records in model_info.json is a field here (dtype may be a name, "bfloat16"), and the
    loader rebuilds the network from them. `inception_block` picks how each Inception stage is
    built from its Table 1 row (architecture.INCEPTION_BLOCKS: "reduced", Figure 2b, or
    "naive", Figure 2a). `blocks` swaps the module classes (as torchvision's `blocks=`).

    `freeze_up_to` (a backbone stage name, "" for none) fixes that stage and every earlier
    one in training: their BatchNorm runs on its running statistics (which stay as they are)
    and no gradient flows into them. The optimizer must leave their parameters alone too
    (training/optim.py does, for weight decay).
    """

    num_classes: int = 1000
    variant: str = "torchvision"
    aux_logits: bool = True
    transform_input: bool = False
    dropout_rate: float | None = None  # None: the variant's own (0.2 torchvision, 0.4 paper)
    aux_dropout_rate: float = 0.7
    dtype: Any = jnp.float32
    bn_axis_name: str | None = None
    bn_running_var: str = "biased"  # "unbiased": torch's running-variance rule (BN_RUNNING_VARS)
    forms: ComputeForms = ComputeForms()
    freeze_up_to: str = ""
    batch_norm_folded: bool = False  # biased convolutions for BatchNorm's blocks: eval only (model/folding.py)
    inception_block: str = "reduced"  # a name in architecture.INCEPTION_BLOCKS
    width_multiplier: float = 1.0  # every backbone convolution's width (Table 1's columns) times this
    blocks: Blocks = Blocks()

    def backbone(self) -> tuple[tuple[str, arch.Block], ...]:
        """The stages this network computes, conv1 to inception5b: (stage name, Block). The ONNX
        writer, the torchvision layout, Table 1 and the stage names read them here."""
        stages = arch.backbone(self.variant, self.inception_block)
        if self.width_multiplier == 1:
            return stages
        return tuple((name, _widened(block, self.width_multiplier)) for name, block in stages)

    def _check_input(self, x):
        self.backbone()  # an unknown variant or Inception block: a ValueError naming the choices
        if self.bn_running_var not in arch.BN_RUNNING_VARS:
            raise ValueError(f"bn_running_var must be one of {arch.BN_RUNNING_VARS}, got {self.bn_running_var!r}")
        if x.ndim != 4 or x.shape[-1] != 3:
            raise ValueError(f"GoogLeNet expects NHWC images of shape (N, H, W, 3), got shape {tuple(x.shape)}")
        smallest = arch.min_input_size(self.variant)
        if min(x.shape[1:3]) < smallest:
            raise ValueError(
                f"input {x.shape[1]}x{x.shape[2]} is too small for the {self.variant} GoogLeNet: "
                f"height and width must be at least {smallest}")

    def capture_names(self) -> tuple[str, ...]:
        """Every name `capture` takes: the stages in network order, then the Inception parts."""
        return arch.stage_names(self.variant, aux_logits=self.aux_logits) + arch.substages(self.backbone())

    def _check_stages(self, capture: Sequence[str], features_only: bool) -> tuple[str, ...]:
        if isinstance(capture, str):
            capture = (capture,)
        unknown = [name for name in capture if name not in self.capture_names()]
        if unknown:
            raise ValueError(f"unknown stage(s) {', '.join(map(repr, unknown))} of the {self.variant} GoogLeNet; "
                             f"stages: {', '.join(arch.stage_names(self.variant, aux_logits=self.aux_logits))} "
                             "(and 'inceptionXY/<part>' for the parts of its Inception blocks: "
                             + ", ".join(dict.fromkeys(name.split("/")[1] for name in arch.substages(self.backbone())))
                             + ")")
        if features_only and not capture:
            raise ValueError("features_only=True returns the captured stages: pass capture=(stage names)")
        return tuple(dict.fromkeys(capture))

    @nn.compact
    def __call__(self, x, *, train: bool, capture: Sequence[str] = (), features_only: bool = False,
                 features: bool = False):
        self._check_input(x)
        capture = self._check_stages(capture, features_only)
        if features and train:
            raise ValueError("features=True returns the pooled features of an eval-mode pass; "
                             "use train=False")
        if self.batch_norm_folded and train:
            raise ValueError("a GoogLeNet with BatchNorm folded into its convolutions runs in eval mode "
                             "only: train the unfolded model")
        spec = arch.variant_spec(self.variant)
        dtype = jnp.dtype(self.dtype)
        conv = functools.partial(
            self.blocks.conv, batch_norm=spec.batch_norm and not self.batch_norm_folded, weight_init=spec.weight_init,
            bias_init=nn.initializers.constant(spec.conv_bias), bn_axis_name=self.bn_axis_name,
            bn_running_var=self.bn_running_var, dtype=dtype, cpu_conv_gradients=self.forms.cpu_conv_gradients)
        stages = {}  # stage name -> output, for capture
        order = arch.stage_names(self.variant, aux_logits=self.aux_logits)
        # Features-only calls stop after the last stage asked for.
        stop_at = max((name.split("/")[0] for name in capture), key=order.index) if features_only else None
        frozen = arch.stages_up_to(self.variant, self.freeze_up_to)

        x = jnp.asarray(x, dtype)
        if self.transform_input:
            # Maps ImageNet-normalised input to the [-1, 1] range the ported weights expect.
            std, mean = jnp.asarray(IMAGENET_STD, dtype), jnp.asarray(IMAGENET_MEAN, dtype)
            x = x * (std / 0.5) + (mean - 0.5) / 0.5

        # Aux heads run in training, and at init so that their parameters exist.
        run_aux = self.aux_logits and (train or self.is_initializing())
        for name, block in self.backbone():
            stage_train = train and name not in frozen
            if block.single:
                x = layer_module(block.parts[0].layer, conv, self.forms, name)(x, train=stage_train)
            else:
                module = self.blocks.inception(block, conv, self.forms, name=name)
                if any(wanted.startswith(name + "/") for wanted in capture):
                    x, parts = module(x, train=stage_train, parts=True)
                    stages.update({f"{name}/{part}": value for part, value in parts.items()})
                else:
                    x = module(x, train=stage_train)
            if train and name in frozen:
                x = jax.lax.stop_gradient(x)
            stages[name] = x
            if run_aux and name in arch.AUX_TAPS and (not features_only or arch.AUX_TAPS[name] in capture):
                head = self.blocks.aux_head(
                    self.num_classes, conv, spec.aux_pool, self.aux_dropout_rate, spec.weight_init,
                    spec.aux_fc1_bias_init, spec.classifier_bias_init, dtype, spec.aux_features,
                    name=arch.AUX_TAPS[name])
                stages[arch.AUX_TAPS[name]] = head(x, train=train)
            if features_only and stop_at in (name, arch.AUX_TAPS.get(name)):
                return _picked(stages, capture)

        out_dtype = jnp.promote_types(dtype, jnp.float32)
        x = stages["avgpool"] = jnp.mean(x, axis=(1, 2))  # adaptive avg pool to 1x1 (Caffe: 7x7 at 224)
        if stop_at == "avgpool":
            return _picked(stages, capture)
        if features:
            return _with_capture(x.astype(out_dtype), stages, capture)
        rate = spec.dropout_rate if self.dropout_rate is None else self.dropout_rate
        x = nn.Dropout(rate)(x, deterministic=not train)
        logits = nn.Dense(
            self.num_classes, dtype=dtype, param_dtype=jnp.float32,
            kernel_init=spec.weight_init, bias_init=spec.classifier_bias_init(x.shape[-1]),
            name="fc")(x)
        logits = stages["fc"] = logits.astype(out_dtype)
        for head in ("aux1", "aux2"):
            if head in stages:
                stages[head] = stages[head].astype(out_dtype)
        if features_only:
            return _picked(stages, capture)
        if self.aux_logits and train:
            return _with_capture(GoogLeNetOutputs(logits, stages["aux1"], stages["aux2"]), stages, capture)
        return _with_capture(logits, stages, capture)


def _picked(stages: dict, names: Sequence[str]) -> dict:
    """The captured stages that ran (the aux heads run in train mode only)."""
    return {name: stages[name] for name in names if name in stages}


def _with_capture(output, stages: dict, names: Sequence[str]):
    return (output, _picked(stages, names)) if names else output
