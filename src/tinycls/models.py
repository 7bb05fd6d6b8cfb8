"""Models by name (`timm:<name>`, `pytorchcv:<name>`, `nas:<spec.yaml>`), adapted to any input
size and class count, and checkpoints that rebuild their own model.

Every model ends in adaptive average pooling and a bias-free 1x1 conv head, as the
competition's entries did. No weights are downloaded unless `pretrained=True`.
"""

from collections.abc import Callable
from typing import Any

from torch import nn

from tinycls.errors import InputError
from tinycls.heads import Classifier, ConvHead
from tinycls.structure import keep_blocks as prune_blocks
from tinycls.structure import reshape_layers


def _timm(name: str, num_classes: int, pretrained: bool, **kwargs: Any) -> nn.Module:
    import timm

    if not timm.is_model(name):
        close = timm.list_models(f"*{name[:6]}*")[:5]
        raise InputError(
            f"timm:{name}: unknown timm model; names come from timm.list_models() (similar: {close or 'none'})."
        )
    body = timm.create_model(name, pretrained=pretrained, num_classes=0, global_pool="avg", **kwargs)
    # head_hidden_size: width after a pre-logits block (e.g. MobileNetV3's conv_head), if any.
    return Classifier(body, getattr(body, "head_hidden_size", None) or body.num_features, num_classes)


def classifier_layer(module: nn.Module) -> tuple[str, nn.Module]:
    """(qualified name, layer) of the last Conv2d or Linear inside `module`, in definition order:
    the classifier, whose shape depends on the class count."""
    found = [(n, m) for n, m in module.named_modules() if n and isinstance(m, (nn.Conv2d, nn.Linear))]
    if not found:
        raise InputError(f"{type(module).__name__}: no Conv2d or Linear classifier layer found.")
    return found[-1]


def _pytorchcv(name: str, num_classes: int, pretrained: bool, **kwargs: Any) -> nn.Module:
    from pytorchcv.model_provider import _models

    if name not in _models:
        close = [m for m in _models if m.startswith(name[:5])][:5]
        raise InputError(
            f"pytorchcv:{name}: unknown pytorchcv model; names come from "
            f"pytorchcv.model_provider._models (similar: {close or 'none'})."
        )
    model = _models[name](pretrained=pretrained, **kwargs)
    if not (hasattr(model, "features") and hasattr(model, "output")):
        raise InputError(f"pytorchcv:{name}: has no features/output pair; only classifiers are supported.")
    pools = [n for n, m in model.features.named_children() if isinstance(m, (nn.AvgPool2d, nn.AdaptiveAvgPool2d))]
    if pools:  # the fixed 7x7 pooling only fits 224 px inputs
        setattr(model.features, pools[-1], nn.AdaptiveAvgPool2d(1))
    if isinstance(model.output, nn.Linear):
        model.output = ConvHead(model.output.in_features, num_classes)
    else:  # a classifier block (e.g. MobileNetV3's conv-hswish-conv): swap its last layer
        name, layer = classifier_layer(model.output)
        parent_name, _, attr = name.rpartition(".")
        parent = model.output.get_submodule(parent_name)
        c = layer.in_channels if isinstance(layer, nn.Conv2d) else layer.in_features
        setattr(
            parent,
            attr,
            nn.Conv2d(c, num_classes, 1, bias=False)
            if isinstance(layer, nn.Conv2d)
            else nn.Linear(c, num_classes, bias=False),
        )
    return model


def _nas(name: str, num_classes: int, pretrained: bool, spec: dict[str, Any] | None = None) -> nn.Module:
    """A network from a spec file (tinycls.specnet); `spec`: the parsed spec a checkpoint recorded,
    used instead of the file."""
    from tinycls import specnet

    if pretrained:
        raise InputError(f"nas:{name}: a spec network has no ImageNet weights; set pretrained: false.")
    parsed = specnet.parse_spec(spec, f"nas:{name} (recorded spec)") if spec is not None else specnet.load_spec(name)
    return specnet.build(parsed, num_classes)


def arch_kwargs(arch: str) -> dict[str, Any]:
    """What a checkpoint of a freshly built `arch` records to rebuild it without outside files:
    the parsed spec of a `nas:` network, nothing for the others."""
    if arch.startswith("nas:"):
        from tinycls import specnet

        return {"spec": specnet.load_spec(arch.partition(":")[2])}
    return {}


SOURCES: dict[str, Callable[..., nn.Module]] = {"timm": _timm, "pytorchcv": _pytorchcv, "nas": _nas}


def build_model(
    arch: str,
    num_classes: int,
    pretrained: bool = False,
    keep_blocks: list[int] | list[list[int]] | None = None,
    layers: dict[str, list[int]] | None = None,
    **kwargs: Any,
) -> nn.Module:
    """Build `SOURCE:NAME` for `num_classes` classes; kwargs go to the source's factory.

    keep_blocks: layer pruning, the first keep_blocks[i] blocks of stage i, or the listed
    block indices (tinycls.structure.keep_blocks). layers: new shapes of pruned or split layers
    (tinycls.structure.reshape_layers). A compressed checkpoint records both in arch_kwargs.

    Raises:
        ValueError: malformed name, unknown source or unknown model (the message says where
            valid names come from).
    """
    source, sep, name = arch.partition(":")
    if not sep or source not in SOURCES or not name:
        raise InputError(
            f"model {arch!r}: expected SOURCE:NAME with SOURCE one of "
            f"{', '.join(SOURCES)}, e.g. 'pytorchcv:shufflenet_g3_wd4', "
            "'timm:mobilenetv3_small_050' or 'nas:specs/example.yaml'."
        )
    if num_classes < 2:
        raise InputError(f"num_classes={num_classes}: a classifier needs at least 2 classes.")
    model = SOURCES[source](name, num_classes, pretrained, **kwargs)
    if keep_blocks is not None:
        prune_blocks(model, keep_blocks, arch)
    if layers:
        reshape_layers(model, layers)
    return model
