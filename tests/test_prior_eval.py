import numpy as np

from flows.cli import main
from pipeline.readers.layouts import iter_records
from pipeline.priors.bank import PriorConfig
from pipeline.priors.evaluate import evaluate_leave_one_out, evaluate_split, scores_table
from pipeline.readers.part_joints import keypoints_from_parts
from pipeline.skeleton import J


def labelled(demo_dir):
    return [r for r in iter_records(demo_dir) if r.label_map is not None]


def test_leave_one_out_on_demo_beats_pose_free(demo_dir):
    recs = labelled(demo_dir)
    scores, info = evaluate_leave_one_out(recs, PriorConfig(size=64), [1, 3])
    assert info["queries"] == len(recs) == 12
    assert scores["k=3"].mean_iou > scores["pose-free"].mean_iou + 0.1
    table = scores_table(scores, "pascal10")
    assert table.count("\n") == 4 and "left-upper-arm" in table


def test_split_evaluation_uses_only_the_bank(demo_dir):
    recs = labelled(demo_dir)
    train = [r for r in recs if r.split == "train"]
    val = [r for r in recs if r.split == "val"]
    scores, info = evaluate_split(train, val, PriorConfig(size=64, flip=True), [3])
    assert info == {"queries": len(val), "bank": 2 * len(train), "skipped": []}
    assert 0 < scores["k=3"].mean_iou <= 1


def test_keypoints_from_part_masks_hand_made():
    h = w = 40
    parts = {n: np.zeros((h, w), bool) for n in ("head", "torso", "ruarm", "rlarm", "rhand", "ruleg")}
    parts["head"][2:8, 16:24] = True
    parts["torso"][8:24, 14:26] = True
    parts["ruarm"][8:16, 10:14] = True  # touches the torso at x = 13/14
    parts["rlarm"][16:22, 10:14] = True
    parts["rhand"][22:25, 10:14] = True
    parts["ruleg"][24:32, 14:19] = True
    kp = keypoints_from_parts(parts)
    assert kp[J["right_elbow"], 2] == 1 and abs(kp[J["right_elbow"], 1] - 15.5) < 1.5
    assert abs(kp[J["right_wrist"], 1] - 21.5) < 1.5
    assert kp[J["right_hip"], 2] == 1 and abs(kp[J["right_hip"], 1] - 23.5) < 1.5
    assert kp[J["left_hip"], 2] == 0 and np.isnan(kp[J["left_hip"], 0])
    # no left hip: the pelvis comes from the torso mask's lower end
    assert kp[J["pelvis"], 2] == 1 and kp[J["pelvis"], 1] > 20
    assert kp[J["head_top"], 1] <= 3 and abs(kp[J["upper_neck"], 1] - 7.5) < 1.5


def test_cli_prior_evaluate_and_show(demo_dir, tmp_path, capsys):
    out = tmp_path / "r.json"
    assert main(["prior", "evaluate", "--data", str(demo_dir), "--size", "64", "--ks", "1", "3",
                 "--split-eval", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "leave-one-out" in text and "pose-free" in text and out.exists()
    png = tmp_path / "g.png"
    assert main(["prior", "show", "--data", str(demo_dir), "--size", "64", "--ids", "demo00000",
                 "demo00001", "--out", str(png)]) == 0
    from pipeline.formats.files import read_image

    img = read_image(png)
    assert img.shape[0] == 2 * (128 + 4) and img.shape[1] >= 6 * 128
    assert main(["prior", "show", "--data", str(demo_dir), "--ids", "nobody", "--out", str(png)]) == 1
    # a keypoint-only person, its prior from another dataset's bank: no ground-truth column
    from pipeline.readers.layouts import keypoint_only_people

    query = keypoint_only_people(demo_dir)[0].person_id
    assert main(["prior", "show", "--data", str(demo_dir), "--bank", str(demo_dir), "--size", "64", "--ids", query,
                 "--out", str(png)]) == 0
    assert read_image(png).shape[1] < img.shape[1]
