"""export-model (ONNX) and predict --engine onnx: same outputs as torch, named errors."""
import json
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("onnxruntime", reason="partsynth[onnx] not installed")

from flows.cli import main as cli  # noqa: E402
from parser_net.export import export_checkpoint  # noqa: E402
from parser_net.networks import load_parser  # noqa: E402
from parser_net.predict import Predictor  # noqa: E402
from pipeline.formats import files  # noqa: E402
from pipeline.errors import CheckpointError  # noqa: E402
from pipeline.formats.files import file_sha256  # noqa: E402
from refine_net.onnx_export import OnnxModule, export_refiner, read_metadata, refiner_onnx  # noqa: E402


@pytest.mark.parametrize("fixture", ["tiny_parser", "tiny_joint", "tiny_refiner"])
def test_export_matches_torch(fixture, request, tmp_path):
    ckpt = request.getfixturevalue(fixture)
    meta = export_checkpoint(ckpt, tmp_path / "m.onnx")
    assert meta["max_abs_diff"] < 1e-4 and len(meta["checked_shapes"]) == 2
    assert json.loads((tmp_path / "m.json").read_text())["checkpoint_sha256"] == files.file_sha256(ckpt)
    expected = {"tiny_parser": ["parsing"], "tiny_joint": ["parsing", "heatmaps"], "tiny_refiner": ["parsing"]}
    assert OnnxModule(tmp_path / "m.onnx").outputs == expected[fixture]
    if fixture != "tiny_refiner":           # parsers take any size, not only the traced one
        model, _ = load_parser(ckpt)
        x = torch.randn(3, 3, 40, 56)
        with torch.no_grad():
            ref = model(x)
        got = OnnxModule(tmp_path / "m.onnx")(x)
        assert all(float((ref[k] - got[k]).abs().max()) < 1e-4 for k in got)


def test_predict_with_onnx_runtime_gives_the_torch_labels(tiny_joint, demo_dir, tmp_path):
    export_checkpoint(tiny_joint, tmp_path / "j.onnx")
    photos = sorted((demo_dir / "images").iterdir())[:4]
    runs = {}
    for engine, ckpt in (("torch", tiny_joint), ("onnx", tmp_path / "j.onnx")):
        pred = Predictor(ckpt, engine=engine, flip=True)
        assert pred.process_images(photos, tmp_path / engine) == ["images_done"] * 4
        pred.finalize(tmp_path / engine)
        runs[engine] = json.loads((tmp_path / engine / "people.json").read_text())
    for a, b in zip(runs["torch"], runs["onnx"]):
        la, lb = (files.read_label_png(tmp_path / e / p["label"]) for e, p in (("torch", a), ("onnx", b)))
        assert (la == lb).mean() > 0.99
        assert np.abs(np.array(a["keypoints"]) - np.array(b["keypoints"])).max() < 0.5


def test_export_and_onnx_errors(tiny_refiner, tiny_parser, demo_dir, tmp_path, capsys):
    assert cli(["export-model", str(tiny_refiner), "--onnx", str(tmp_path / "r.onnx")]) == 0
    assert "max abs diff to torch" in capsys.readouterr().out
    with pytest.raises(CheckpointError, match="exported refiner; a parser is needed"):
        Predictor(tmp_path / "r.onnx", engine="onnx")
    (tmp_path / "lone.onnx").write_bytes((tmp_path / "r.onnx").read_bytes())
    with pytest.raises(CheckpointError, match="lone.json beside it"):
        Predictor(tmp_path / "lone.onnx", engine="onnx")
    (tmp_path / "junk.pt").write_bytes(b"junk")
    assert cli(["export-model", str(tmp_path / "junk.pt")]) == 1
    assert "junk.pt" in capsys.readouterr().err


@pytest.mark.parametrize("kind,arch,joint_arch,fusion", [("parser", "ssnan", "jppnet", "hnl"),
                                                        ("parser", "decoder", "jppnet", "hnl"),
                                                        ("joint", "deeplab", "pil", "hnl"),
                                                        ("joint", "deeplab", "htcorrm", "hnl")])
def test_the_parsing_family_exports_with_dynamic_batch_and_size(kind, arch, joint_arch, fusion, tmp_path):
    """SS-NAN, PIL (per-image kernels: unfolded while exporting) and HTCorrM (HNL's L x L
    relation map) export and match torch at sizes other than the traced one."""
    from parser_net.model import ParserConfig
    from parser_net.networks import build_network, network_outputs, network_record
    from refine_net.onnx_export import export_onnx, max_abs_diff

    torch.manual_seed(0)
    pc = ParserConfig(num_classes=8, width=4, blocks=(1, 1, 1, 1), head_width=8, aspp_rates=(1, 2, 3, 4))
    net = network_record(kind, arch, pc, 1, 64, joint_arch, "parsing", fusion)
    model = build_network(net).eval()
    path = export_onnx(model, torch.randn(1, 3, 64, 48), tmp_path / "m.onnx", list(network_outputs(net)), True)
    assert max_abs_diff(model, OnnxModule(path), [torch.randn(1, 3, 64, 48), torch.randn(2, 3, 48, 64)]) < 1e-4


def test_a_pretrained_parser_exports_and_matches_torch_at_every_size(tmp_path):
    """EfficientNet-Lite's "SAME" padding depends on each size's parity: an export traced at
    one size must still match torch at odd and even sizes it was not traced at."""
    from parser_net.model import ParserConfig
    from parser_net.networks import build_network, network_record
    from refine_net.encoders import init_pretrained
    from refine_net.onnx_export import export_onnx, max_abs_diff

    torch.manual_seed(0)
    pc = ParserConfig(num_classes=8, head_width=8, output_stride=16, aspp_rates=(1, 2, 3, 4),
                      encoder="efficientnet-lite0")
    model = build_network(network_record("parser", "decoder", pc, 1, 64)).eval()
    init_pretrained(model, "imagenet")
    path = export_onnx(model, torch.randn(1, 3, 64, 48), tmp_path / "m.onnx", ["parsing"], True)
    inputs = [torch.randn(1, 3, 64, 48), torch.randn(2, 3, 48, 64), torch.randn(1, 3, 50, 37), torch.randn(1, 3, 161, 117)]
    assert max_abs_diff(model, OnnxModule(path), inputs) < 1e-4


def test_synthesis_with_onnx_runtime_gives_the_torch_labels(demo_dir, tiny_refiner, tmp_path):
    import shutil

    from pipeline.formats.files import read_label_png
    from pipeline.formats.synth_dataset import read_items
    from pipeline.readers.layouts import keypoint_only_people
    from refine_net.config import SynthConfig
    from refine_net.synthesize import Synthesizer

    ckpt = tmp_path / "refiner" / "last.pt"
    ckpt.parent.mkdir()
    shutil.copy(tiny_refiner, ckpt)
    people, labels, fingerprints = keypoint_only_people(demo_dir), {}, {}
    for engine in ("torch", "onnx"):
        out = tmp_path / engine
        synth = Synthesizer(SynthConfig(checkpoint=str(ckpt), data=str(demo_dir), out=str(out), engine=engine,
                                        mirror_average=True))
        assert synth.run(people, out)["images_done"] == 8
        labels[engine] = {i.image: read_label_png(out / i.label) for i in read_items(out)}
        fingerprints[engine] = synth.fingerprint
    assert (tmp_path / "refiner" / "last.onnx").is_file() and (tmp_path / "refiner" / "last.json").is_file()
    assert fingerprints["torch"] != fingerprints["onnx"]      # one engine's items are not reused by the other
    assert labels["torch"].keys() == labels["onnx"].keys()
    differ = sum(int((labels["torch"][k] != labels["onnx"][k]).sum()) for k in labels["torch"])
    total = sum(v.size for v in labels["torch"].values())
    assert differ <= total * 1e-4                            # float rounding may flip a near-tie pixel, no more

    # the export is reused while the checkpoint is the same, and made again when it changes
    onnx = tmp_path / "refiner" / "last.onnx"
    made = onnx.stat().st_mtime_ns
    assert refiner_onnx(ckpt) == onnx and onnx.stat().st_mtime_ns == made
    torch_ckpt = torch.load(ckpt, weights_only=False)
    torch_ckpt["step"] += 1
    torch.save(torch_ckpt, ckpt)
    refiner_onnx(ckpt)
    assert read_metadata(onnx, kind="refiner")["checkpoint_sha256"] == file_sha256(ckpt)


def test_onnx_synthesis_on_a_gpu_is_refused(tiny_refiner):
    from refine_net.config import SynthConfig

    with pytest.raises(Exception, match="runs on the CPU"):
        SynthConfig(checkpoint=str(tiny_refiner), data="d", out="o", engine="onnx", device="cuda")


def test_a_read_only_checkpoint_folder_exports_to_the_cache(tiny_refiner, tmp_path, monkeypatch):
    import os

    import refine_net.onnx_export as onnx_export
    from pipeline.formats.files import file_sha256

    # root may write anywhere, so the folder is made read-only in the only way root sees it: os.access
    real_access = os.access
    monkeypatch.setattr(onnx_export.os, "access",
                        lambda p, mode: False if Path(p) == tiny_refiner.parent else real_access(p, mode))
    monkeypatch.setenv("PARTSYNTH_CACHE", str(tmp_path / "cache"))
    before = sorted(p.name for p in tiny_refiner.parent.iterdir())
    path = refiner_onnx(tiny_refiner)
    assert path == tmp_path / "cache" / "onnx" / f"refiner-{file_sha256(tiny_refiner)[:20]}.onnx"
    assert read_metadata(path, kind="refiner")["checkpoint_sha256"] == file_sha256(tiny_refiner)
    assert sorted(p.name for p in tiny_refiner.parent.iterdir()) == before      # nothing written beside it
    made = path.stat().st_mtime_ns
    assert refiner_onnx(tiny_refiner) == path and path.stat().st_mtime_ns == made   # reused


def test_the_onnx_engine_without_onnx_runtime_stops_before_any_work(tiny_refiner, shared_data, monkeypatch):
    import importlib.util

    from flows.experiment_config import ExperimentConfig, preset_values
    from refine_net.config import SynthConfig

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "onnxruntime" else real_find_spec(name, *a))
    with pytest.raises(Exception, match=r"--engine onnx needs onnxruntime: pip install 'partsynth\[onnx\]'"):
        SynthConfig(checkpoint=str(tiny_refiner), data="d", out="o", engine="onnx")
    with pytest.raises(Exception, match="--synthesis-engine onnx needs onnxruntime"):
        ExperimentConfig(**dict(preset_values("ccp", str(shared_data)), synthesis_engine="onnx"))
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "onnx" else real_find_spec(name, *a))
    with pytest.raises(Exception, match=r"ONNX export needs onnx: pip install"):
        export_refiner(tiny_refiner, tiny_refiner.parent / "x.onnx")


def test_the_presets_auto_engine_is_onnx_runtime_on_the_cpu_and_torch_on_a_gpu(shared_data, monkeypatch):
    import importlib.util

    import torch

    from flows.experiment_config import ExperimentConfig, preset_values

    cfg = ExperimentConfig(**preset_values("ccp", str(shared_data)))
    data = str(shared_data / "ccp")
    assert cfg.synthesis_engine == "auto" and cfg.synthesis("last.pt", data).engine == "onnx"
    assert ExperimentConfig(**dict(preset_values("ccp", str(shared_data)), device="cpu")).engine() == "onnx"
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "onnxruntime" else real_find_spec(name, *a))
    assert cfg.synthesis("last.pt", data).engine == "torch"     # no partsynth[onnx]: torch, not a stop
    monkeypatch.setattr(importlib.util, "find_spec", real_find_spec)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert cfg.synthesis_check("last.pt").engine == "torch"     # a GPU: torch
    assert ExperimentConfig(**dict(preset_values("ccp", str(shared_data)), device="cpu")).engine() == "onnx"
