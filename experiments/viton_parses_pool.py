"""VITON's people with VITON's own machine parses as their labels (docs/results.md, 'Keypoint-only people of another kind').

    python experiments/viton_parses_pool.py --synth data/exp/viton/synth_lite0_masks --out data/exp/viton/parses_pool

Copies a synthesized VITON folder (ccp8) and gives each
item, in place of its synthetic label, the LIP-style parse shipped beside the photo mapped
to ccp8 as ``experiments/viton_agreement.py`` maps it.  The people, photos and crops stay
the same; only the labels change, from CCP's bank and refiner to a LIP-trained network's.
A parser row trained on this folder against one trained on ``--synth`` separates the pool's
kind (catalogue shots, not CCP's street photos) from the synthetic labels' quality.
"""
from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path

import numpy as np

from pipeline.formats.files import file_sha256, read_label_png, write_json, write_label_png
from pipeline.formats.item_folder import item_files
from pipeline.formats.synth_dataset import finalize_dataset, read_item, read_synth_info
from pipeline.labels import remap
from viton_agreement import lip20_to_ccp8_lut


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--synth", required=True, help="synthesized VITON dataset (ccp8)")
    ap.add_argument("--viton", default="../shared/data/viton", help="the VITON folder (images/, parse/)")
    ap.add_argument("--out", required=True, help="new folder (must not exist)")
    args = ap.parse_args()
    t0, lut, out = time.time(), lip20_to_ccp8_lut(), Path(args.out)
    if out.exists():
        raise SystemExit(f"{out}: exists; remove it or name another folder")
    shutil.copytree(args.synth, out, ignore=shutil.ignore_patterns("labels", "probs"))
    (out / "labels").mkdir()
    changed = 0
    for path in item_files(out):
        item = read_item(path)
        if not item.label:
            continue
        parse = remap(read_label_png(Path(args.viton) / "parse" / f"{Path(item.image).stem}.png"), lut)
        write_label_png(out / item.label, parse.astype(np.uint8))
        item.label_sha256, item.probs = file_sha256(out / item.label), None
        write_json(path, item.to_json())
        changed += 1
    finalize_dataset(out, read_synth_info(out))        # people.json, annotations.json, manifest from the new labels
    print(f"{out}: {changed} items labelled by VITON's parses ({time.time() - t0:.0f} s)")


if __name__ == "__main__":
    main()
