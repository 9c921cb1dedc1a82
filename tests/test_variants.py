"""The variant registry: one declaration per variant, read by the model, the export, the report and the CLI."""

from __future__ import annotations

import subprocess
import sys

import pytest

from edgeproj.errors import ConfigError
from edgeproj.models import variants
from edgeproj.models.variants import REC_LOSS_KINDS, Variant, get_variant, list_variants, variant_names


def test_names_and_labels_are_unique_and_in_declaration_order():
    assert variant_names() == tuple(v.name for v in list_variants())
    assert variant_names()[:4] == ("l2ae", "dsae", "vae", "gvae")  # the paper's four, Table 1's column order
    assert len({v.label for v in list_variants()}) == len(list_variants())


def test_an_unknown_variant_is_a_config_error_listing_the_choices():
    with pytest.raises(ConfigError, match="unknown variant 'wae'; choose one of l2ae, dsae, vae, gvae"):
        get_variant("wae")


def test_a_declaration_is_checked():
    with pytest.raises(ValueError, match="rec_loss"):
        Variant("x", "X", "?", rec_loss="l1")
    with pytest.raises(ValueError, match="learned gamma"):
        Variant("x", "X", "?", rec_loss="dssim", learned_gamma=True)
    with pytest.raises(ValueError, match="twice"):
        variants.register(get_variant("l2ae"))


def test_every_kind_of_rec_loss_has_pytorch_code_and_an_onnx_head():
    from edgeproj.export.heads import HEADS
    from edgeproj.models.autoencoder import REC_LOSSES

    assert set(REC_LOSSES) == set(HEADS) == set(REC_LOSS_KINDS)


def test_the_registry_and_the_train_choices_import_without_torch():
    code = (
        "import sys; from edgeproj.models.variants import variant_names; import edgeproj.cli.train; "
        "print(sorted(m for m in ('torch', 'onnx') if m in sys.modules), ','.join(variant_names()))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["[]", ",".join(variant_names())]


def _result(category: str, variant: str) -> dict:
    figures = {m: 0.5 for m in ("pixel_auroc", "au_pro", "image_auroc")}
    return {"category": category, "variant": variant, "baseline": figures, "grad": figures, "single_gradient": {}}


def test_table_1_has_a_column_pair_for_every_variant_in_registry_order():
    from edgeproj.evaluation.report import table_markdown

    names = list(reversed(variant_names()))
    table = table_markdown([_result("grid", v) for v in names])
    labels = [get_variant(v).label for v in variant_names()]
    head = "| category | " + " | ".join(f"{lab} | {lab}-grad" for lab in labels) + " |"
    assert head in table


def test_table_1_refuses_an_unknown_variant_instead_of_dropping_it():
    from edgeproj.evaluation.report import table_markdown

    with pytest.raises(ConfigError, match="unknown variant 'wae'"):
        table_markdown([_result("grid", "l2ae"), _result("grid", "wae")])


def test_a_new_variant_is_its_declaration_alone(monkeypatch):
    """A copy of L2AE declared only here trains, exports the same graphs as L2AE, and gets its Table 1 column."""
    import torch

    from edgeproj.evaluation.report import table_markdown
    from edgeproj.export.bundle import model_spec
    from edgeproj.export.energy import build_gradient_graph
    from edgeproj.export.network import NetworkEmitter, plan_from_model
    from edgeproj.models import ModelConfig, build_model

    copy = Variant("l2ae_copy", "L2AE copy", get_variant("l2ae").formula)
    monkeypatch.setitem(variants._REGISTRY, copy.name, copy)
    graphs = {}
    for name in ("l2ae", copy.name):
        torch.manual_seed(0)
        model = build_model(ModelConfig(variant=name, width=8, latent=16))
        loss, parts = model.training_loss(torch.rand(2, 1, 128, 128))
        loss.backward()
        assert set(parts) == {"rec"}
        graphs[name] = build_gradient_graph(NetworkEmitter(plan_from_model(model)), model_spec(model)).SerializeToString()
    assert graphs["l2ae"] == graphs[copy.name]
    assert "| L2AE copy | L2AE copy-grad |" in table_markdown([_result("grid", copy.name)])
