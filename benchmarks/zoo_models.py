"""qstudio's zoo: one plain factory per model, built the way a user builds it, random weights.

Each function is what a user would pass on the command line as
``benchmarks/zoo_models.py:NAME`` (``qstudio quantize benchmarks/zoo_models.py:resnet18 --mode fx ...``).
benchmarks/zoo.py runs them through the real CLI and tests/zoo/test_zoo.py
drives the same runs, so this file is the one list of zoo models.

Rules every factory keeps:

* nothing is downloaded: torchvision ``weights=None``, timm ``pretrained=False``,
  Hugging Face models from small configs;
* random-weight models get realistic BatchNorm statistics (a few random
  batches in train mode, :func:`settle`), as a trained model would have them:
  otherwise activations collapse and INT8 figures describe noise;
* ``build.input_shape`` is set only where the model needs a non-default size
  (small images keep each run short; ViT and Swin need 224);
* no ``input_dtype`` attribute anywhere: qstudio infers int64 token ids from a
  model whose first layer is an ``nn.Embedding``, and the zoo checks that it does;
* heavy imports (timm, transformers, torch's quantization test models) happen
  inside the factory, so each run imports only what its model needs.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

SMALL = [1, 3, 64, 64]  # the size most CNNs run at here: the mechanics are the same as at 224, the runs short
MEDIUM = [1, 3, 96, 96]
FULL = [1, 3, 224, 224]


def settle(model: nn.Module, shape: list[int], batches: int = 3, batch_size: int = 8, seed: int = 0) -> nn.Module:
    """Give a random-weight model the BatchNorm statistics a trained one has; return it in eval mode.

    torchvision and timm initialise running_mean = 0 and running_var = 1, so
    nothing is normalised and deep nets' outputs shrink towards zero.  A few
    random batches in train mode, averaged cumulatively, fix that.  The
    weights stay random.
    """
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if norms:
        for m in norms:
            m.reset_running_stats()
            m.momentum = None  # cumulative average over the settling batches
        model.train()
        gen = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for _ in range(batches):
                model(torch.randn(batch_size, *shape[1:], generator=gen))
        for m in norms:
            m.momentum = 0.1
    return model.eval()


def _shape(fn: Callable[[], nn.Module], shape: list[int]) -> Callable[[], nn.Module]:
    fn.input_shape = list(shape)  # type: ignore[attr-defined]
    return fn


def _tv(name: str, shape: list[int], **kwargs) -> nn.Module:
    import torchvision

    return settle(torchvision.models.get_model(name, weights=None, **kwargs), shape)


# --------------------------------------------------------------------------- torchvision


def resnet18() -> nn.Module:
    return _tv("resnet18", SMALL)


def resnet50() -> nn.Module:
    return _tv("resnet50", SMALL)


def mobilenet_v2() -> nn.Module:
    return _tv("mobilenet_v2", SMALL)


def mobilenet_v3_small() -> nn.Module:
    return _tv("mobilenet_v3_small", SMALL)


def mobilenet_v3_large() -> nn.Module:
    return _tv("mobilenet_v3_large", SMALL)


def efficientnet_b0() -> nn.Module:
    return _tv("efficientnet_b0", SMALL)


def regnet_y_400mf() -> nn.Module:
    return _tv("regnet_y_400mf", SMALL)


def shufflenet_v2_x1_0() -> nn.Module:
    return _tv("shufflenet_v2_x1_0", SMALL)


def googlenet() -> nn.Module:
    # aux_logits off: the auxiliary heads only run in training, and a user deploying it drops them
    return _tv("googlenet", MEDIUM, aux_logits=False, init_weights=True)


def inception_v3() -> nn.Module:
    return _tv("inception_v3", [1, 3, 128, 128], aux_logits=False, init_weights=True)


def densenet121() -> nn.Module:
    return _tv("densenet121", SMALL)


def convnext_tiny() -> nn.Module:
    return _tv("convnext_tiny", SMALL)


def vit_b_32() -> nn.Module:
    model = _tv("vit_b_32", FULL)
    # torchvision zero-initialises the classifier head, so a random-weight ViT outputs exactly 0 (a trained one
    # never does): give the head small random weights as training would
    torch.manual_seed(0)
    nn.init.normal_(model.heads.head.weight, std=0.02)
    return model


def swin_t() -> nn.Module:
    return _tv("swin_t", FULL)


for _f, _s in (
    (resnet18, SMALL), (resnet50, SMALL), (mobilenet_v2, SMALL), (mobilenet_v3_small, SMALL),
    (mobilenet_v3_large, SMALL), (efficientnet_b0, SMALL), (regnet_y_400mf, SMALL), (shufflenet_v2_x1_0, SMALL),
    (googlenet, MEDIUM), (inception_v3, [1, 3, 128, 128]), (densenet121, SMALL), (convnext_tiny, SMALL),
    (vit_b_32, FULL), (swin_t, FULL),
):  # fmt: skip
    _shape(_f, _s)


# --------------------------------------------------------------------------- torchvision.models.quantization
# The quantizable versions (QuantStub/DeQuantStub, FloatFunctional adds, fuse_model()): eager mode's home ground.


def _tvq(name: str, shape: list[int], **kwargs) -> nn.Module:
    import torchvision.models.quantization as tvq

    return settle(getattr(tvq, name)(weights=None, quantize=False, **kwargs), shape)


def q_resnet18() -> nn.Module:
    return _tvq("resnet18", SMALL)


def q_resnet50() -> nn.Module:
    return _tvq("resnet50", SMALL)


def q_mobilenet_v2() -> nn.Module:
    return _tvq("mobilenet_v2", SMALL)


def q_mobilenet_v3_large() -> nn.Module:
    return _tvq("mobilenet_v3_large", SMALL)


def q_shufflenet_v2_x1_0() -> nn.Module:
    return _tvq("shufflenet_v2_x1_0", SMALL)


def q_googlenet() -> nn.Module:
    return _tvq("googlenet", MEDIUM, aux_logits=False, init_weights=True)


def q_inception_v3() -> nn.Module:
    return _tvq("inception_v3", [1, 3, 128, 128], aux_logits=False, init_weights=True)


for _f, _s in (
    (q_resnet18, SMALL), (q_resnet50, SMALL), (q_mobilenet_v2, SMALL), (q_mobilenet_v3_large, SMALL),
    (q_shufflenet_v2_x1_0, SMALL), (q_googlenet, MEDIUM), (q_inception_v3, [1, 3, 128, 128]),
):  # fmt: skip
    _shape(_f, _s)


class Qresnet(nn.Module):
    """The seed tutorial's wrapper, verbatim: stubs around a model that quantizes in eager mode."""

    def __init__(self, m: nn.Module) -> None:
        super().__init__()
        self.q = torch.ao.quantization.QuantStub()
        self.m = m
        self.dq = torch.ao.quantization.DeQuantStub()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dq(self.m(self.q(x)))


def tutorial_qresnet() -> nn.Module:
    """The tutorial's model: quantizable resnet18's body (its own stubs and fc dropped), a 2-class head, wrapped."""
    import torchvision.models as models

    resnet = nn.Sequential(
        *list(models.quantization.resnet18(weights=None, quantize=False).children())[:-3],
        nn.Flatten(),
        nn.Linear(512, 2),
    )
    return settle(Qresnet(resnet), SMALL)


_shape(tutorial_qresnet, SMALL)


# --------------------------------------------------------------------------- timm


def _timm(name: str, shape: list[int], **kwargs) -> nn.Module:
    import timm

    return settle(timm.create_model(name, pretrained=False, **kwargs), shape)


def timm_efficientnet_lite0() -> nn.Module:
    return _timm("efficientnet_lite0", SMALL)


def timm_mobilenetv3_small_100() -> nn.Module:
    return _timm("mobilenetv3_small_100", SMALL)


def timm_convnext_atto() -> nn.Module:
    return _timm("convnext_atto", SMALL)


def timm_vit_tiny_patch16_224() -> nn.Module:
    return _timm("vit_tiny_patch16_224", FULL)


for _f, _s in (
    (timm_efficientnet_lite0, SMALL), (timm_mobilenetv3_small_100, SMALL), (timm_convnext_atto, SMALL),
    (timm_vit_tiny_patch16_224, FULL),
):  # fmt: skip
    _shape(_f, _s)


# --------------------------------------------------------------------------- Hugging Face (small configs)
TOKENS = [1, 16]  # one sequence of 16 token ids; the dtype (int64) is qstudio's to infer from the embedding
VOCAB = 500


class TokenModel(nn.Module):
    """A Hugging Face model behind ``forward(input_ids) -> tensor``: the form qstudio (and TorchScript) take."""

    def __init__(self, hf: nn.Module, output: str) -> None:
        super().__init__()
        self.hf = hf
        self.output = output

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return getattr(self.hf(input_ids=input_ids, return_dict=True), self.output)


def _hf(model: nn.Module, output: str) -> nn.Module:
    model.config.use_cache = False  # a decoder's key/value cache is a generation feature, not part of one forward
    return TokenModel(model, output).eval()


def bert_encoder() -> nn.Module:
    from transformers import BertConfig, BertModel

    cfg = BertConfig(
        vocab_size=VOCAB, hidden_size=64, num_hidden_layers=2, num_attention_heads=2, intermediate_size=128
    )
    torch.manual_seed(0)
    return _hf(BertModel(cfg, add_pooling_layer=False), "last_hidden_state")


def distilbert_encoder() -> nn.Module:
    from transformers import DistilBertConfig, DistilBertModel

    cfg = DistilBertConfig(vocab_size=VOCAB, dim=64, n_layers=2, n_heads=2, hidden_dim=128)
    torch.manual_seed(0)
    return _hf(DistilBertModel(cfg), "last_hidden_state")


def gpt2_decoder() -> nn.Module:
    from transformers import GPT2Config, GPT2LMHeadModel

    cfg = GPT2Config(vocab_size=VOCAB, n_embd=64, n_layer=2, n_head=2, n_positions=64, bos_token_id=0, eos_token_id=0)
    torch.manual_seed(0)
    return _hf(GPT2LMHeadModel(cfg), "logits")


def llama_decoder() -> nn.Module:
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(
        vocab_size=VOCAB, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=2,
        num_key_value_heads=2, max_position_embeddings=64, bos_token_id=0, eos_token_id=0,
    )  # fmt: skip
    torch.manual_seed(0)
    return _hf(LlamaForCausalLM(cfg), "logits")


for _f in (bert_encoder, distilbert_encoder, gpt2_decoder, llama_decoder):
    _shape(_f, TOKENS)


# --------------------------------------------------------------------------- torch's own quantization test models
# torch.testing._internal.common_quantization: the models PyTorch tests its quantization on.  Some carry
# their own qconfig attribute or stubs; qstudio is expected to take them as they are.


def _cq():
    import torch.testing._internal.common_quantization as cq

    return cq


def tq_annotated_conv_bn_relu() -> nn.Module:
    return settle(_cq().AnnotatedConvBnReLUModel(), [1, 3, 16, 16])


def tq_quant_stub_model() -> nn.Module:
    return _cq().QuantStubModel().eval()


def tq_sequential_fusion() -> nn.Module:
    return settle(_cq().ModelWithSequentialFusion(), [1, 3, 10, 10])  # reshape to 3*10*10: the size is fixed


def tq_rnn_lstm() -> nn.Module:
    return _cq().RNNDynamicModel("LSTM").eval()


def tq_conv_transpose() -> nn.Module:
    return _cq().ConvTransposeModel().eval()


def tq_annotated_conv_transpose() -> nn.Module:
    return _cq().AnnotatedConvTransposeModel("fbgemm").eval()


def tq_conv_transpose_bn() -> nn.Module:
    return settle(_cq().ModelForConvTransposeBNFusion(), [1, 3, 8])


def tq_multiple_ops() -> nn.Module:
    return settle(_cq().ModelMultipleOps(), [1, 3, 8, 8])


def tq_manual_conv_linear_qat() -> nn.Module:
    return _cq().ManualConvLinearQATModel().eval()  # view(-1, 64) after a 3x3 conv: 10x10 inputs


for _f, _s in (
    (tq_annotated_conv_bn_relu, [1, 3, 16, 16]), (tq_quant_stub_model, [1, 5]), (tq_sequential_fusion, [1, 3, 10, 10]),
    (tq_rnn_lstm, [1, 4, 2]), (tq_conv_transpose, [1, 3, 16, 16]), (tq_annotated_conv_transpose, [1, 3, 16, 16]),
    (tq_conv_transpose_bn, [1, 3, 8]), (tq_multiple_ops, [1, 3, 8, 8]), (tq_manual_conv_linear_qat, [1, 3, 10, 10]),
):  # fmt: skip
    _shape(_f, _s)

del _f, _s
