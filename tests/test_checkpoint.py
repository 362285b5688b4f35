"""One checkpoint format: typed payload, weights-only loading, named errors, extension,
device choice."""
import json
import shutil

import pytest
import torch

from flows.cli import main as cli
from parser_net.config import ParserTrainConfig
from parser_net.networks import load_parser
from parser_net.train import load_pool, train_parser
from pipeline.errors import CheckpointError, ConfigError
from refine_net.checkpoint import FORMAT_VERSION, load_checkpoint
from refine_net.config import RefinerTrainConfig
from refine_net.device import resolve_device
from refine_net.train import fit_refiner, load_refiner

from conftest import TINY_PARSER


def test_payload_is_typed_and_loads_weights_only(tiny_refiner, tiny_parser):
    r = load_checkpoint(tiny_refiner)
    assert (r.kind, r.step, r.format_version, r.label_set) == ("refiner", 3, FORMAT_VERSION, "pascal10")
    assert {"refine", "prior", "bank_data"} <= r.network.keys() and "torch" in r.rng
    assert r.package_version and len(r.history) == 3 and r.optimizer["state"]
    raw = torch.load(tiny_refiner, weights_only=True)        # plain tensors and containers only
    assert raw["format"] == "partsynth-checkpoint" and raw["kind"] == "refiner"
    p = load_checkpoint(tiny_parser, kind="parser")
    assert p.network["kind"] == "parser" and p.network["size"] == 32 and p.step == 2
    assert ParserTrainConfig.model_validate(p.config).iterations == 2


def test_bad_files_give_one_line_naming_the_file(tmp_path, tiny_refiner, tiny_parser):
    empty = tmp_path / "empty.pt"
    empty.touch()
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(tiny_refiner.read_bytes()[:2000])
    text = tmp_path / "notes.pt"
    text.write_text("not a checkpoint\n")
    foreign = tmp_path / "foreign.pt"
    torch.save({"state_dict": {"w": torch.zeros(2)}}, foreign)
    cases = {empty: "empty file", truncated: "not a readable checkpoint", text: "not a readable checkpoint",
             foreign: "not a partsynth checkpoint", tmp_path / "missing.pt": "checkpoint not found"}
    for path, problem in cases.items():
        with pytest.raises(CheckpointError, match=problem) as e:
            load_checkpoint(path)
        assert e.value.path == path
    with pytest.raises(CheckpointError, match="this is a refiner checkpoint; a parser checkpoint is needed"):
        load_parser(tiny_refiner)
    with pytest.raises(CheckpointError, match="this is a parser checkpoint; a refiner checkpoint is needed"):
        load_refiner(tiny_parser)


def test_cli_names_the_wrong_kind(demo_dir, tiny_refiner, tiny_parser, tmp_path, capsys):
    assert cli(["evaluate", "--checkpoint", str(tiny_refiner), "--data", str(demo_dir)]) == 1
    err = capsys.readouterr().err.strip()
    assert err == f"error: {tiny_refiner}: this is a refiner checkpoint; a parser checkpoint is needed here"
    assert cli(["evaluate-refiner", str(tiny_parser)]) == 1
    assert "this is a parser checkpoint" in capsys.readouterr().err
    truncated = tmp_path / "last.pt"
    truncated.write_bytes(tiny_parser.read_bytes()[:500])
    assert cli(["evaluate", "--checkpoint", str(truncated), "--data", str(demo_dir)]) == 1
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and str(truncated) in err and "Traceback" not in err


def test_cli_keeps_the_traceback_of_a_bug(monkeypatch):
    import flows.cli

    def broken(args):
        return {}["missing key"]

    monkeypatch.setattr(flows.cli, "cmd_data_summary", broken)
    with pytest.raises(KeyError):
        cli(["data", "summary", "--demo"])


def test_parser_run_is_extended_by_a_larger_iteration_count(demo_dir, tmp_path):
    cfg = ParserTrainConfig(data=str(demo_dir), out_dir=str(tmp_path / "p"), iterations=2, **TINY_PARSER)
    pool = load_pool(cfg.data, (), cfg.label_set, 40)
    train_parser(cfg, pool)
    longer = cfg.model_copy(update={"iterations": 4})
    ckpt = load_checkpoint(train_parser(longer, pool))
    assert ckpt.step == 4 and [h["step"] for h in ckpt.history] == [2, 4]
    assert ParserTrainConfig.model_validate(ckpt.config).iterations == 4
    with pytest.raises(ConfigError, match="lr differ"):
        train_parser(longer.model_copy(update={"lr": 0.5}), pool)


def test_device_option_is_honoured(demo_dir, tmp_path, tiny_parser):
    model, _ = load_parser(tiny_parser, "cpu")
    assert {p.device.type for p in model.parameters()} == {"cpu"}
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="CUDA is not available"):
            resolve_device("cuda")
        cfg = RefinerTrainConfig(data=str(demo_dir), out_dir=str(tmp_path / "r"), epochs=1, size=32, depth=3,
                                 base_filters=4, threads=1, device="cuda")
        with pytest.raises(ConfigError, match="CUDA is not available"):
            fit_refiner(cfg)
    with pytest.raises(ConfigError, match="unknown device"):
        resolve_device("tpu")


@pytest.mark.gpu
def test_refiner_and_parser_train_on_cuda(demo_dir, tmp_path):
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    path = fit_refiner(RefinerTrainConfig(data=str(demo_dir), out_dir=str(tmp_path / "r"), epochs=1, size=64,
                                            depth=4, base_filters=8, device="cuda"))
    model, _ = load_refiner(path, "cuda")
    assert next(model.parameters()).is_cuda
    cfg = ParserTrainConfig(data=str(demo_dir), out_dir=str(tmp_path / "p"), iterations=2, device="cuda",
                            **TINY_PARSER)
    metrics_path = train_parser(cfg, load_pool(cfg.data, (), cfg.label_set, 40)).parent / "metrics.json"
    assert json.loads(metrics_path.read_text())["val"]["images"] == 3


def test_training_lists_skipped_items(demo_dir, tmp_path):
    data = shutil.copytree(demo_dir, tmp_path / "demo")
    people = json.loads((data / "people.json").read_text())
    bad = next(p for p in people if p["label"] and p["split"] == "train")
    (data / bad["label"]).write_bytes(b"not a png")
    cfg = RefinerTrainConfig(data=str(data), out_dir=str(tmp_path / "r"), epochs=1, size=32, depth=3, base_filters=4,
                             threads=1)
    fit_refiner(cfg)
    skipped = json.loads((tmp_path / "r" / "config.json").read_text())["skipped"]
    assert len(skipped) == 1 and skipped[0]["file"].endswith(bad["label"]) and skipped[0]["reason"]
    pcfg = ParserTrainConfig(data=str(data), out_dir=str(tmp_path / "p"), iterations=2, **TINY_PARSER)
    pool = load_pool(pcfg.data, (), pcfg.label_set, 40)
    train_parser(pcfg, pool)
    assert json.loads((tmp_path / "p" / "config.json").read_text())["skipped"] == skipped
    with pytest.raises(ConfigError, match=r"1 bad items skipped \(--strict\); the first: .*" + bad["label"]):
        fit_refiner(cfg.model_copy(update={"strict": True, "out_dir": str(tmp_path / "r2")}))
    from parser_net.train import fit_parser

    with pytest.raises(ConfigError, match="--strict"):
        fit_parser(pcfg.model_copy(update={"strict": True, "out_dir": str(tmp_path / "p2")}))


def test_relative_training_data_is_found_from_another_folder(demo_dir, tmp_path, monkeypatch):
    from refine_net.config import SynthConfig
    from refine_net.synthesize import Synthesizer

    monkeypatch.chdir(demo_dir.parent)
    path = fit_refiner(RefinerTrainConfig(data=demo_dir.name, out_dir=str(tmp_path / "r"), epochs=1, size=32,
                                            depth=3, base_filters=4, threads=1))
    assert load_checkpoint(path).network["bank_data"] == str(demo_dir.resolve())
    monkeypatch.chdir(tmp_path)
    synth = Synthesizer(SynthConfig(checkpoint=str(path), data=str(demo_dir), out="out"))
    assert len(synth.bank.exemplars) > 0
