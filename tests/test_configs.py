"""One typed config per run kind: the CLI, the Prefect flow and the checkpoint agree."""
import json

import pytest
import yaml

from flows.cli import build_parser
from flows.experiment import run_experiment
from flows.experiment_config import ExperimentConfig, preset_values
from flows.options import config_from_args, validate_config
from flows.run_cli import experiment_config
from flows.keypoints import estimate_keypoints
from flows.predict import predict_labels
from flows.synthesis import synthesize_labels
from flows.training import train_parser, train_refiner
from parser_net.config import ParserTrainConfig, PredictConfig
from pipeline.errors import ConfigError
from pipeline.keypoints_config import KeypointsConfig
from refine_net.checkpoint import load_checkpoint
from refine_net.config import RefinerTrainConfig, SynthConfig

COMMANDS = {"train-refiner": (RefinerTrainConfig, train_refiner, ["--data", "D", "--out", "O"]),
            "train-parser": (ParserTrainConfig, train_parser, ["--data", "D", "--out", "O", "--synthetic", "S1", "S2"]),
            "synthesize": (SynthConfig, synthesize_labels, ["--checkpoint", "C", "--data", "D", "--out", "O"]),
            "predict": (PredictConfig, predict_labels, ["--checkpoint", "C", "--data", "D", "--out", "O", "--scales", "0.75",
                                                        "1", "--engine", "onnx"]),
            "keypoints": (KeypointsConfig, estimate_keypoints, ["--data", "D", "--out", "O", "--boxes", "B",
                                                                "--min-box-score", "0.3"])}


def cli_config(command: str, argv: list[str]):
    model = COMMANDS[command][0]
    return config_from_args(model, build_parser().parse_args([command, *argv]))


@pytest.mark.parametrize("command", sorted(COMMANDS))
@pytest.mark.parametrize("profile", ["cpu", "gpu"])
def test_cli_flow_and_saved_config_agree(command, profile):
    model, flow, argv = COMMANDS[command]
    extra = ["--profile", profile] if "profile" in model.model_fields else []
    from_cli = cli_config(command, argv + extra)
    direct = model(**{k: v for k, v in from_cli.model_dump().items() if k in model.model_fields})
    assert from_cli == direct
    # Prefect validates the flow parameter exactly as a deployment passes it (JSON)
    params = flow.validate_parameters({"cfg": from_cli.model_dump(mode="json")})
    assert params["cfg"] == from_cli
    # what a checkpoint / run folder saves reads back equal
    assert model.model_validate(json.loads(json.dumps(from_cli.model_dump(mode="json")))) == from_cli


def test_profiles_fill_only_unset_sizes():
    gpu = cli_config("train-parser", ["--data", "D", "--out", "O", "--profile", "gpu", "--width", "8"])
    assert (gpu.width, gpu.size, gpu.head_width, gpu.batch_size, gpu.blocks) == (8, 320, 512, 16, (2, 2, 2, 2))
    refiner = cli_config("train-refiner", ["--data", "D", "--out", "O", "--profile", "gpu", "--no-prior"])
    assert (refiner.size, refiner.base_filters, refiner.depth, refiner.use_prior) == (256, 64, 8, False)
    assert refiner.loss == RefinerTrainConfig(data="D", out_dir="O").loss == "ce"      # one default everywhere


def test_the_main_job_gpu_profile_keeps_every_size(tmp_path):
    args = build_parser().parse_args(["run", "--preset", "demo", "--data-root", str(tmp_path / "demo"),
                                      "--profile", "gpu", "--device", "cpu"])
    cfg = experiment_config(args)
    assert cfg.work == "data/runs/demo" and cfg.parser_iterations == 800
    parser = cfg.parser("p")
    assert (parser.size, parser.width, parser.head_width, parser.batch_size) == (320, 64, 512, 16)
    assert cfg.refiner().size == 256 and cfg.refiner().device == "cpu"
    assert run_experiment.validate_parameters({"cfg": cfg.model_dump(mode="json")})["cfg"] == cfg
    args = build_parser().parse_args(["run", "--preset", "demo", "--data-root", str(tmp_path / "demo"),
                                      "--parser-arch", "decoder", "--parser-head-width", "64", "--mirror-average",
                                      "--synthesis-engine", "onnx"])
    cfg = experiment_config(args)
    parser = cfg.parser("p", ("s",))
    assert (parser.arch, parser.head_width, parser.width, parser.finetune_iterations) == ("decoder", 64, 16, 250)
    for synth in (cfg.synthesis("last.pt", cfg.keypoint_only[0]), cfg.synthesis_check("last.pt")):
        assert synth.mirror_average and synth.engine == "onnx"


def test_the_two_parsers_share_the_threads_only_on_the_cpu(tmp_path):
    def parsers(*flags, on_cpu=True):
        args = build_parser().parse_args(["run", "--preset", "demo", "--data-root", str(tmp_path / "demo"), *flags])
        cfg = experiment_config(args)
        runs = cfg.parsers(("s",), on_cpu)
        return cfg.parsers_train_at_once(on_cpu), {n: (p.threads, p.synthetic) for n, p in runs.items()}

    both = {"labelled only": (1, ()), "labelled + synthetic": (1, ("s",))}
    assert parsers() == (True, both)
    assert parsers("--threads", "5") == (True, {n: (2, s) for n, (_, s) in both.items()})
    assert parsers("--no-parsers-at-once") == (False, {n: (2, s) for n, (_, s) in both.items()})
    assert parsers(on_cpu=False)[0] is False and parsers("--threads", "1")[0] is False
    assert parsers(on_cpu=False)[1]["labelled only"][0] == 2


@pytest.mark.parametrize("suffix", [".yaml", ".json"])
def test_config_file_then_flags(tmp_path, suffix):
    values = {"data": "D", "out_dir": "O", "epochs": 7, "lr": 0.01, "profile": "gpu"}
    path = tmp_path / f"run{suffix}"
    path.write_text(yaml.safe_dump(values) if suffix == ".yaml" else json.dumps(values))
    cfg = cli_config("train-refiner", ["--config", str(path), "--epochs", "9"])
    assert (cfg.epochs, cfg.lr, cfg.size, cfg.data) == (9, 0.01, 256, "D")
    # a run folder's config.json ({"train": {...}}) is accepted as it is
    folder = tmp_path / "config.json"
    folder.write_text(json.dumps({"train": cfg.model_dump(mode="json"), "label_set": "ccp8"}))
    assert cli_config("train-refiner", ["--config", str(folder)]) == cfg


def test_config_errors_are_one_line(tmp_path):
    with pytest.raises(ConfigError, match=r"--data: Field required"):
        cli_config("train-refiner", ["--out", "O"])
    with pytest.raises(ConfigError, match=r"--finetune-iterations|finetune_iterations"):
        cli_config("train-parser", ["--data", "D", "--out", "O", "--iterations", "5", "--finetune-iterations", "9"])
    bad = tmp_path / "bad.yaml"
    bad.write_text("epochs: [1, 2\n")
    with pytest.raises(ConfigError, match="bad.yaml: not valid YAML"):
        cli_config("train-refiner", ["--config", str(bad)])
    with pytest.raises(ConfigError, match="unknown preset"):
        preset_values("nope")
    with pytest.raises(ConfigError, match="bogus: Extra inputs are not permitted"):
        validate_config(ExperimentConfig, {"labelled": "L", "keypoint_only": [], "work": "W", "bogus": 1})
    two = {"labelled": "L", "keypoint_only": ["/d/ccp", "/d/lsp"], "work": "W"}
    with pytest.raises(ConfigError, match=r"parser_synthetic names \['coco'\] are not keypoint-only sets"):
        validate_config(ExperimentConfig, dict(two, parser_synthetic=["ccp", "coco"]))
    with pytest.raises(ConfigError, match="parser_synthetic is empty"):
        validate_config(ExperimentConfig, dict(two, parser_synthetic=[]))
    only_ccp = validate_config(ExperimentConfig, dict(two, parser_synthetic=["ccp"]))
    assert [only_ccp.trains_parser(d) for d in two["keypoint_only"]] == [True, False]
    assert all(validate_config(ExperimentConfig, two).trains_parser(d) for d in two["keypoint_only"])


def test_checkpoint_holds_the_resolved_training_config(tiny_refiner):
    ckpt = load_checkpoint(tiny_refiner, kind="refiner")
    cfg = RefinerTrainConfig.model_validate(ckpt.config)
    assert (cfg.size, cfg.base_filters, cfg.depth, cfg.epochs) == (64, 8, 4, 3)
    saved = json.loads((tiny_refiner.parent / "config.json").read_text())
    assert RefinerTrainConfig.model_validate(saved["train"]) == cfg
    assert saved["bank_data"] == ckpt.network["bank_data"] and saved["bank_data"].startswith("/")


def test_the_raw_photos_preset_estimates_keypoints_once_per_dataset(shared_data, tmp_path):
    from pipeline.readers.layouts import link_unlabelled_photos

    cfg = validate_config(ExperimentConfig, preset_values("ccp-photos", str(shared_data)))
    raw = cfg.raw_photos()
    assert cfg.keypoint_only == (raw,) and cfg.trains_parser(raw) and cfg.person_masks
    assert [k.data for k in cfg.keypoint_runs()] == [cfg.labelled]           # the photos' synthesis does its own
    assert cfg.synthesis("C", raw).person_masks is None
    assert cfg.synthesis_check("C").person_masks == cfg.keypoint_runs()[0].out
    links = tmp_path / "photos"
    linked = link_unlabelled_photos(shared_data / "ccp", links)
    assert len(linked) == len(list(links.iterdir())) > 1000
    assert all(int(p.stem) > 1004 for p in linked) and all(p.is_symlink() for p in links.iterdir())
    (links / "0001.jpg").symlink_to(shared_data / "ccp" / "photos" / "0001.jpg")          # a stale link goes
    assert len(link_unlabelled_photos(shared_data / "ccp", links)) == len(list(links.iterdir()))
    (links / "mine.txt").write_text("x")
    with pytest.raises(ConfigError, match="mine.txt, which is not a link"):
        link_unlabelled_photos(shared_data / "ccp", links)


def test_the_ccp_presets_train_imagenet_pretrained_networks_and_a_user_can_pick_scratch(shared_data):
    for preset in ("ccp", "ccp-photos"):
        cfg = validate_config(ExperimentConfig, preset_values(preset, str(shared_data)))
        parser = cfg.parser("p", ("s",))
        assert (parser.encoder, parser.encoder_weights, parser.output_stride) == ("efficientnet-lite0", "imagenet", 16)
        assert (cfg.refiner().encoder, cfg.refiner().encoder_weights, cfg.refiner().epochs) == \
            ("efficientnet-lite0", "imagenet", 15)
        assert cfg.synthesis("ckpt", str(shared_data / "ccp")).engine == "onnx"
    scratch = validate_config(ExperimentConfig, dict(preset_values("ccp", str(shared_data)), parser_encoder="scratch",
                                                     refiner_encoder="scratch", synthesis_engine="torch"))
    assert (scratch.parser("p").encoder, scratch.parser("p").output_stride) == ("scratch", 8)
    assert scratch.refiner().encoder == "scratch"
    demo = validate_config(ExperimentConfig, preset_values("demo"))
    assert demo.parser("p").encoder == "scratch"


def test_the_ccp_preset_labels_the_people_its_parser_trains_on(shared_data):
    ccp, lsp = str(shared_data / "ccp"), str(shared_data / "lsp")
    cfg = experiment_config(build_parser().parse_args(["run", "--preset", "ccp", "--data-root", str(shared_data)]))
    assert cfg.keypoint_only == (ccp,) and [k.data for k in cfg.keypoint_runs()] == [ccp]
    both = experiment_config(build_parser().parse_args(["run", "--preset", "ccp", "--data-root", str(shared_data),
                                                        "--keypoint-only", ccp, lsp]))
    assert [both.trains_parser(d) for d in both.keypoint_only] == [True, False]
    assert [k.data for k in both.keypoint_runs()] == [ccp, lsp]
