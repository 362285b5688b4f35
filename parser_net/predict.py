"""Applying a trained parser (or joint parsing + pose network) to photos without labels:
label maps, optional overlays and probabilities, and keypoints for joint networks, in the
predictions folder of :mod:`pipeline.formats.predictions`.  Each photo's files are written
atomically, its record last, so a killed run resumes where it stopped."""
from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

from pipeline.formats import files
from pipeline.errors import DataError
from pipeline.formats.files import file_sha256
from pipeline.labels import LABEL_SETS
from pipeline.pictures.overlay import draw_keypoints, overlay
from pipeline.formats.predictions import PredictedItem, PredictionsInfo, finalize_predictions, predicted_item_intact
from pipeline.formats.item_folder import item_name, write_item
from parser_net.evaluate import label_map_of, predict_probabilities_batch
from parser_net.networks import heatmap_stride, load_parser, network_outputs
from parser_net.dataset import long_side_shape
from parser_net.pose_eval import keypoints_from_heatmaps, predict_keypoints
from refine_net.onnx_export import OnnxModule, read_metadata


def photo_sha256(photo: str | Path) -> str:
    """Hex SHA-256 of a photo's bytes; "" when it is not a file (it is then recorded as
    failed)."""
    return file_sha256(photo) if Path(photo).is_file() else ""


class Predictor:
    """A parser checkpoint ready to parse photos with fixed test-time options."""

    def __init__(self, checkpoint: str | Path, *, scales: Sequence[float] = (1.0,), flip: bool = False,
                 overlays: bool = False, save_probabilities: bool = False, device: str = "auto",
                 engine: str = "torch", threads: int | None = None, batch_size: int = 8):
        """Load the parser in eval mode: ``engine="torch"``: ``last.pt`` of ``train-parser``
        on ``device``; ``engine="onnx"``: a ``.onnx`` of ``export-model`` run by ONNX
        Runtime on the CPU with ``threads`` threads.

        ``scales``/``flip``: multi-scale and mirrored testing as in ``evaluate``
        (:func:`parser_net.evaluate.predict_probabilities`); ``overlays``: also write
        JPEG overlays; ``save_probabilities``: also write the class probabilities;
        ``batch_size``: photos per forward pass (speed only: not in the fingerprint).
        Raises CheckpointError naming the file when it is not a parser checkpoint (or
        exported parser); ConfigError for ``onnx`` without ONNX Runtime installed."""
        if engine == "onnx":
            meta = read_metadata(checkpoint, kind="parser")
            self.model, label_set, network = OnnxModule(checkpoint, threads), meta["label_set"], meta["network"]
        else:
            self.model, ckpt = load_parser(checkpoint, device)
            label_set, network = ckpt.label_set, ckpt.network
        self.checkpoint = str(Path(checkpoint).resolve())
        self.label_set = LABEL_SETS[label_set]
        self.long_side = int(network["size"])
        self.joint = "heatmaps" in network_outputs(network)
        self.stride = heatmap_stride(network)
        self.scales, self.flip = tuple(float(s) for s in scales), flip
        self.overlays, self.save_probabilities = overlays, save_probabilities
        self.batch_size = max(1, int(batch_size))
        self.flip_perm = self.label_set.flip_lut()[: self.label_set.num_classes].astype(np.int64) if flip else None
        self.checkpoint_sha256 = file_sha256(checkpoint)
        self.config = {"engine": engine, "scales": list(self.scales), "flip": flip, "overlays": overlays,
                       "save_probabilities": save_probabilities, "long_side": self.long_side}
        self.fingerprint = hashlib.sha256(json.dumps({"ckpt": self.checkpoint_sha256, **self.config},
                                                     sort_keys=True).encode()).hexdigest()[:16]

    def predict(self, image: np.ndarray) -> tuple[np.ndarray, torch.Tensor, np.ndarray | None]:
        """Parse one uint8 (H, W, 3) RGB photo: :meth:`predict_batch` of one."""
        return self.predict_batch([image])[0]

    @torch.no_grad()
    def predict_batch(self, images: list[np.ndarray]) -> list[tuple[np.ndarray, torch.Tensor, np.ndarray | None]]:
        """Parse uint8 (H, W, 3) RGB photos of any sizes (same-shaped inputs share a forward
        pass: :func:`parser_net.evaluate.predict_probabilities_batch`).

        Returns per photo: uint8 (H, W) label map (class ids of the checkpoint's label set),
        float32 (C, H, W) probabilities, and for joint networks float32 (16, 3) keypoints
        (x, y in the photo's pixels, heatmap peak as confidence; from the scale-1 view's
        heatmaps, or one more forward pass when 1 is not among the scales), else None."""
        heatmaps = [None] * len(images) if self.joint else None
        probs = predict_probabilities_batch(self.model, images, self.long_side, self.scales, self.flip_perm, heatmaps)
        results = []
        for i, (image, p) in enumerate(zip(images, probs)):
            keypoints = None
            if self.joint and heatmaps[i] is not None:
                keypoints = keypoints_from_heatmaps(heatmaps[i], self.stride,
                                                    long_side_shape(image.shape[:2], self.long_side), image.shape[:2])
            elif self.joint:
                keypoints = predict_keypoints(self.model, image, self.long_side, self.stride)
            results.append((label_map_of(p), p, keypoints))
        return results

    def process_images(self, photos: Sequence[str | Path], out: str | Path, force: bool = False,
                       progress: Callable[[str], None] | None = None,
                       image_sha256: Sequence[str] | None = None) -> list[str]:
        """Parse ``photos`` into the predictions folder ``out``, ``batch_size`` photos per
        forward pass (each photo's files atomic, its record last).  Returns one status per
        photo: ``images_reused`` (already done by a run with this fingerprint, files intact;
        unless ``force``), ``images_failed`` (unreadable or corrupt: recorded with the
        reason) or ``images_done``.  ``progress`` gets each photo's item name as it is
        finished.  ``image_sha256``: the photos' hashes when the caller has them
        (:func:`photo_sha256` otherwise)."""
        out = Path(out)
        photos = [str(p) for p in photos]
        shas = list(image_sha256) if image_sha256 is not None else [photo_sha256(p) for p in photos]
        statuses: list[str] = [""] * len(photos)
        todo = []
        for i, (photo, sha) in enumerate(zip(photos, shas)):
            if not force and predicted_item_intact(out, photo, self.fingerprint, sha):
                statuses[i] = "images_reused"
                if progress:
                    progress(item_name(photo))
            else:
                todo.append(i)
        for start in range(0, len(todo), self.batch_size):
            batch, images = [], []
            for i in todo[start:start + self.batch_size]:
                try:
                    images.append(files.read_image(photos[i]))
                    batch.append(i)
                except DataError as e:
                    write_item(out, PredictedItem(photos[i], (0, 0), self.fingerprint, shas[i], error=e.problem))
                    statuses[i] = "images_failed"
                    if progress:
                        progress(item_name(photos[i]))
            for i, image, result in zip(batch, images, self.predict_batch(images) if images else []):
                self._write(photos[i], shas[i], image, *result, out)
                statuses[i] = "images_done"
                if progress:
                    progress(item_name(photos[i]))
        return statuses

    def _write(self, photo: str, image_sha256: str, image: np.ndarray, label_map: np.ndarray, probs: torch.Tensor,
               keypoints: np.ndarray | None, out: Path) -> None:
        """Write one parsed photo's files atomically, its record last."""
        name = item_name(photo)
        item = PredictedItem(photo, tuple(image.shape[:2]), self.fingerprint, image_sha256, label=f"labels/{name}.png")
        files.write_label_png(out / item.label, label_map, self.label_set.palette)
        item.label_sha256 = file_sha256(out / item.label)
        if keypoints is not None:
            item.keypoints = [[round(float(v), 2) for v in row[:2]] + [round(float(row[2]), 4)] for row in keypoints]
        if self.overlays:
            item.overlay = f"overlays/{name}.jpg"
            view = overlay(image, label_map, palette=self.label_set.palette)
            if keypoints is not None:
                view = draw_keypoints(view, np.concatenate([keypoints[:, :2], np.full((len(keypoints), 1), 2)], 1),
                                      radius=max(2, round(max(image.shape[:2]) / 150)))
            files.write_image(out / item.overlay, view)
        if self.save_probabilities:
            item.probs = f"probs/{name}.npz"
            with files.atomic_path(out / item.probs) as tmp:
                np.savez_compressed(tmp, probs=np.round(probs.numpy() * 255).astype(np.uint8))
        write_item(out, item)

    def info(self) -> PredictionsInfo:
        """``dataset.json`` of this run's predictions folder."""
        return PredictionsInfo(label_set=self.label_set.name, parser_checkpoint=self.checkpoint,
                               parser_sha256=self.checkpoint_sha256, predict_config=self.config,
                               fingerprint=self.fingerprint)

    def finalize(self, out: str | Path) -> dict:
        """people.json and dataset.json from the records (:func:`finalize_predictions`)."""
        return finalize_predictions(out, self.info())
