"""FP32 vs INT8: accuracy/agreement, per-layer SQNR and what actually got quantized.

Per-layer figures follow the Numeric Suite's two views (the PyTorch FX PTQ
blog post): *weight* SQNR compares each quantized layer's int8 weight with
the float weight it came from (after BN folding), *activation* SQNR compares
each layer's output in the INT8 model with the same layer's output in the
float reference on the same input, so it includes error accumulated upstream.
"""

from __future__ import annotations

import contextlib
import math
from collections import Counter
from collections.abc import Generator
from dataclasses import dataclass, field

import torch
from torch import nn

from qstudio.core.data import Dataset
from qstudio.core.flows import QuantizedModel, module_for
from qstudio.core.flows.dynamic import is_conv1d
from qstudio.core.progress import Progress
from qstudio.core.tensors import first_tensor, sqnr_db

_QUANTIZED_PACKAGES = ("torch.ao.nn.quantized", "torch.ao.nn.intrinsic.quantized", "torch.ao.nn.quantizable")
_NOT_LAYERS = ("Quantize", "DeQuantize", "QuantStub", "DeQuantStub", "LinearPackedParams", "EmbeddingPackedParams")


def is_quantized_module(module: nn.Module) -> bool:
    cls = type(module)
    return cls.__module__.startswith(_QUANTIZED_PACKAGES) and cls.__name__ not in _NOT_LAYERS


@dataclass
class LayerError:
    name: str
    type: str
    weight_sqnr_db: float | None
    activation_sqnr_db: float | None

    def worst_db(self) -> float:
        """The figure used to rank layers: activation SQNR, else weight SQNR."""
        for v in (self.activation_sqnr_db, self.weight_sqnr_db):
            if v is not None:
                return v
        return math.inf


@dataclass
class Evaluation:
    """How close INT8 is to FP32 (agreement, output SQNR, cosine) and to the labels (accuracy)."""

    fp32_accuracy: float | None
    int8_accuracy: float | None
    agreement: float  # top-1 match with FP32
    output_sqnr_db: float
    cosine: float  # mean cosine similarity of outputs (what matters for embeddings), always within [-1, 1]
    samples: int
    data: str
    fp32_max_abs: float | None = None  # largest |y| of the FP32 outputs: near 0 means a collapsed (untrained) model
    classes: int | None = None  # size of the main output's last dimension: chance agreement is 1 / classes
    #: how many different top-1 answers FP32 gave over the data: 1 means agreement cannot tell models apart
    fp32_top1_distinct: int | None = None
    #: share of the rows where FP32's top-1 leads its runner-up by less than :data:`TIE_MARGIN` of the row's spread
    near_ties: float | None = None


#: A top-1 that leads its runner-up by less than this fraction of the row's standard deviation is a near-tie:
#: any change in arithmetic can flip it.  On the demo digits (trained) 0.5% of rows are; on a random-weight
#: resnet18 fed random inputs 24% are, and OpenVINO BF16 (cosine 0.99994) already flips 2.7% of them.
TIE_MARGIN = 0.05


@dataclass
class CoverageRow:
    type: str
    total: int
    quantized: int
    float: int


@dataclass
class Coverage:
    rows: list[CoverageRow]
    quantized_layers: list[str]
    float_layers: list[str]
    kept_float: dict[str, bool]  # user's skip list -> confirmed float
    warnings: list[str] = field(default_factory=list)

    @property
    def fraction(self) -> float:
        total = len(self.quantized_layers) + len(self.float_layers)
        return len(self.quantized_layers) / total if total else 0.0


# -- weights ----------------------------------------------------------------
def _float_weight(ref: nn.Module) -> torch.Tensor | None:
    """The float weight a quantized layer came from, with BN folded in as convert folds it."""
    bn = getattr(ref, "bn", None)
    weight = getattr(ref, "weight", None)
    if isinstance(weight, torch.Tensor) and isinstance(bn, nn.modules.batchnorm._BatchNorm):
        # QAT ConvBn modules keep BN separate until convert folds it.
        assert bn.running_var is not None
        scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
        return weight * scale.reshape([-1] + [1] * (weight.dim() - 1))
    if isinstance(weight, torch.Tensor):
        return weight.t() if is_conv1d(ref) else weight  # GPT-2's Conv1D stores (in, out); Linear has (out, in)
    if isinstance(ref, nn.Sequential) and len(ref) and isinstance(getattr(ref[0], "weight", None), torch.Tensor):
        return ref[0].weight  # fused ConvReLU/LinearReLU
    return None


def _int8_weight(module: nn.Module) -> torch.Tensor | None:
    w = getattr(module, "weight", None)
    if callable(w):
        try:
            w = w()
        except Exception:
            return None
    if isinstance(w, torch.Tensor):
        return w.dequantize() if w.is_quantized else w
    return None


def _pairs(q: QuantizedModel) -> list[tuple[str, nn.Module, nn.Module | None]]:
    ref_modules = dict(q.reference.named_modules())
    out = []
    for name, module in q.module.named_modules():
        if not name or not is_quantized_module(module):
            continue
        out.append((name, module, ref_modules.get(q.reference_name(name))))
    return out


def layer_errors(
    q: QuantizedModel, data: Dataset, batch_size: int = 16, max_batches: int = 4
) -> Generator[Progress, None, list[LayerError]]:
    """Weight and activation SQNR for every quantized layer, sorted worst first."""
    pairs = _pairs(q)
    signal: dict[str, float] = {}
    noise: dict[str, float] = {}
    captured: dict[str, torch.Tensor] = {}
    handles = []

    def keep(key: str):
        def hook(_m, _inp, out):
            with contextlib.suppress(TypeError):  # outputs without a tensor are not compared
                captured[key] = first_tensor(out).detach().float().clone()  # later in-place ops must not change it

        return hook

    for name, module, ref in pairs:
        if ref is None:
            continue
        handles.append(module.register_forward_hook(keep("q:" + name)))
        handles.append(ref.register_forward_hook(keep("r:" + name)))
    total = data.num_batches(batch_size, max_batches)
    try:
        yield Progress("compare layers", 0, total)
        with torch.no_grad():
            for i, (x, _) in enumerate(data.batches(batch_size, max_batches)):
                captured.clear()
                q.reference(x)
                q.module(x)
                for name, _m, _r in pairs:
                    a, b = captured.get("r:" + name), captured.get("q:" + name)
                    if a is None or b is None or a.shape != b.shape:
                        continue
                    signal[name] = signal.get(name, 0.0) + float(a.pow(2).sum())
                    noise[name] = noise.get(name, 0.0) + float((a - b).pow(2).sum())
                yield Progress("compare layers", i + 1, total)
    finally:
        for h in handles:
            h.remove()
    errors = []
    for name, module, ref in pairs:
        w_ref = _float_weight(ref) if ref is not None else None
        w_q = _int8_weight(module)
        w_db = sqnr_db(w_ref, w_q) if w_ref is not None and w_q is not None and w_ref.shape == w_q.shape else None
        a_db = None
        if name in signal:
            n = noise[name]
            a_db = math.inf if n == 0 else (10 * math.log10(signal[name] / n) if signal[name] > 0 else -math.inf)
        errors.append(LayerError(q.user_name(name), type(module).__name__, w_db, a_db))
    errors.sort(key=LayerError.worst_db)
    return errors


def worst_layers(errors: list[LayerError], k: int) -> list[str]:
    return [e.name for e in errors[:k]]


# -- whole-model evaluation ---------------------------------------------------
_MAIN_OUTPUT_KEYS = ("sentence_embedding", "logits", "last_hidden_state")


def output_tensors(out: object) -> list[torch.Tensor]:
    """The floating-point tensors of a model output that are compared with FP32, dequantized.

    A tensor is itself; a tuple or list (two heads, several feature maps) is
    every tensor in it; a dict, or a transformers ModelOutput, is its main entry
    when it has one (``logits``, ``sentence_embedding``, ``last_hidden_state``:
    the rest are caches and hidden states), else every value.  Integer
    tensors (indices, masks) are left out.
    """
    if isinstance(out, torch.Tensor):
        t = out.dequantize() if out.is_quantized else out
        return [t] if t.is_floating_point() else []
    if isinstance(out, dict):
        main = next((k for k in _MAIN_OUTPUT_KEYS if k in out), None)
        return output_tensors(out[main]) if main is not None else output_tensors(list(out.values()))
    if hasattr(out, "to_tuple"):  # a transformers ModelOutput that is not a dict
        return output_tensors(out.to_tuple())
    if isinstance(out, (list, tuple)):
        return [t for item in out for t in output_tensors(item)]
    return []


def _rows(t: torch.Tensor) -> torch.Tensor:
    """One row per index of the first dimension (a sample when it is the batch), at least one row."""
    return t.reshape(1, -1) if t.dim() < 2 else t.reshape(t.shape[0], -1)


def output_cosine(a: list[torch.Tensor], b: list[torch.Tensor]) -> float | None:
    """Mean cosine similarity of two outputs (lists from :func:`output_tensors`): within [-1, 1].

    Each tensor is cut into rows along its first dimension; a tensor's figure
    is the mean of its rows' cosines and the output's the mean over its
    tensors, so two heads count alike and an output whose first dimension is
    not the batch (2N rows, a sequence-first tensor) is still an average.
    """
    per_tensor = []
    for x, y in zip(a, b, strict=False):
        if x.shape != y.shape or not x.numel():
            continue
        per_tensor.append(
            float(torch.nn.functional.cosine_similarity(_rows(x).double(), _rows(y).double(), dim=1).mean())
        )
    return sum(per_tensor) / len(per_tensor) if per_tensor else None


#: The most samples evaluation runs at once; never more than the run's own batch size (a model may take only 1).
EVAL_BATCH = 32


def eval_batch_size(batch_size: int) -> int:
    """Evaluation's batch size for a run whose calibration batch size is ``batch_size``."""
    return max(1, min(EVAL_BATCH, batch_size))


def evaluate(
    fp32: nn.Module, int8: nn.Module, data: Dataset, batch_size: int = EVAL_BATCH
) -> Generator[Progress, None, Evaluation]:
    """Run both models over ``data``: accuracy when labeled, agreement, output SQNR and cosine always.

    Agreement compares the top-1 (argmax of the last dimension) of the main
    output (:func:`~qstudio.core.tensors.first_tensor`); SQNR and cosine
    cover every output tensor (:func:`output_tensors`), the cosine as a mean
    per row (:func:`output_cosine`), weighted by the samples in each batch.
    """
    total = data.num_batches(batch_size)
    correct_f = correct_q = 0
    agree = sig = noi = cos_sum = 0.0
    largest = 0.0
    classes = None
    answers: set[int] = set()
    ties = rows = 0
    yield Progress("evaluate", 0, total)
    with torch.no_grad():
        for i, (x, y) in enumerate(data.batches(batch_size)):
            out_f, out_q = fp32(x), int8(x)
            a = first_tensor(out_f).float()
            b = first_tensor(out_q).float()
            classes = a.shape[-1] if a.dim() else 1
            pa, pb = a.argmax(-1), b.argmax(-1)
            agree += float((pa == pb).flatten().float().mean()) * len(x)
            if classes and classes > 1:
                answers.update(int(v) for v in pa.flatten().unique())
                ties += _near_ties(a)
                rows += a.numel() // classes
            if y is not None:
                correct_f += int((pa == y).sum())
                correct_q += int((pb == y).sum())
            ta, tb = output_tensors(out_f) or [a], output_tensors(out_q) or [b]
            for u, v in zip(ta, tb, strict=False):
                if u.shape != v.shape:
                    continue
                u, v = u.double(), v.double()
                sig += float(u.pow(2).sum())
                noi += float((u - v).pow(2).sum())
                finite = u[torch.isfinite(u)]
                if finite.numel():
                    largest = max(largest, float(finite.abs().max()))
            cos = output_cosine(ta, tb)
            cos_sum += (0.0 if cos is None else cos) * len(x)
            yield Progress("evaluate", i + 1, total)
    n = len(data)
    labeled = data.labels is not None
    out_db = math.inf if noi == 0 else 10 * math.log10(sig / noi) if sig > 0 else -math.inf
    return Evaluation(
        correct_f / n if labeled else None,
        correct_q / n if labeled else None,
        round(agree) / n,
        out_db,
        min(1.0, max(-1.0, cos_sum / n)),
        n,
        data.description,
        largest,
        classes,
        len(answers) if answers else None,
        ties / rows if rows else None,
    )


def _near_ties(logits: torch.Tensor) -> int:
    """Rows of ``logits`` (last dimension: the classes) whose top-1 leads the runner-up by < TIE_MARGIN x their std."""
    rows = logits.reshape(-1, logits.shape[-1])
    top2 = rows.topk(2, dim=-1).values
    lead = top2[:, 0] - top2[:, 1]
    spread = rows.std(dim=-1)
    finite = torch.isfinite(lead) & torch.isfinite(spread) & (spread > 0)
    return int((finite & (lead < TIE_MARGIN * spread)).sum())


# -- coverage -----------------------------------------------------------------
_NORM_TYPES = (nn.modules.batchnorm._BatchNorm,)


def coverage(original: nn.Module, q: QuantizedModel, skip: list[str]) -> Coverage:
    """Which of the model's weighted layers run quantized after convert, per type."""
    qmods = dict(q.module.named_modules())
    by_type_total: Counter[str] = Counter()
    by_type_q: Counter[str] = Counter()
    quantized: list[str] = []
    floats: list[str] = []
    for name, m in original.named_modules():
        if not name or list(m.children()) or isinstance(m, _NORM_TYPES):
            continue
        if not any(p.numel() for p in m.parameters(recurse=False)):
            continue
        tname = type(m).__name__
        by_type_total[tname] += 1
        found = module_for(q, name, qmods)
        if found is not None and is_quantized_module(found):
            by_type_q[tname] += 1
            quantized.append(name)
        else:
            floats.append(name)
    rows = [CoverageRow(t, n, by_type_q[t], n - by_type_q[t]) for t, n in sorted(by_type_total.items())]
    kept = {}
    for name in skip:
        found = module_for(q, name, qmods)
        kept[name] = found is not None and not is_quantized_module(found)
    warnings = []
    total = len(quantized) + len(floats)
    expected = total - len([n for n in floats if any(n == s or n.startswith(s + ".") for s in skip)])
    if total and not quantized:
        warnings.append(
            "NOTHING WAS QUANTIZED: no weighted layer runs in INT8 after convert. The model will not be faster or smaller. "
            "Check the mode (dynamic mode only handles Linear/LSTM/GRU) and the skip list."
        )
    elif expected and len(quantized) < 0.5 * expected:
        warnings.append(
            f"Only {len(quantized)} of {expected} weighted layers were quantized; the speedup will be small. "
            f"Still float: {', '.join(floats[:5])}{' ...' if len(floats) > 5 else ''}."
        )
    for name, ok in kept.items():
        if not ok:
            warnings.append(f"'{name}' was asked to stay in float but is not a float module after convert.")
    return Coverage(rows, quantized, floats, kept, warnings)
