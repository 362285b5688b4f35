"""The config of a ``partsynth keypoints`` run (BlazePose on photos without keypoints)."""
from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class KeypointsConfig(BaseModel):
    """Estimate keypoints and person masks for every photo of ``data`` into ``out``
    (:mod:`pipeline.formats.estimated_poses`).  Frozen; unknown keys refused."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    data: str = Field(description="a photo, a folder of photos, or a dataset in any supported layout")
    out: str = Field(description="keypoints folder (resumable; a keypoint-only partsynth dataset)")
    boxes: str | None = Field(None, description="COCO detections or annotations file with person boxes: one "
                                                "person per box (default: one person per photo)")
    min_box_score: float = Field(0.5, ge=0.0, le=1.0, description="drop detections scoring below this")
    box_padding: float = Field(0.25, ge=0.0, description="pad each box by this fraction of its longer side")
    min_detection_confidence: float = Field(0.5, ge=0.0, le=1.0, description="BlazePose person-detector threshold")
    model_complexity: int = Field(1, description="BlazePose model: only 1 (full) is inside the mediapipe wheel; "
                                                 "0 and 2 would download and are refused")
    chunk_size: int = Field(16, ge=1, description="photos per flow task on average (speed only)")
    workers: int = Field(2, ge=1, description="flow tasks at a time (one BlazePose graph each)")

    def estimator_options(self) -> dict:
        """The options that change what is estimated (part of every photo's fingerprint)."""
        return {"model_complexity": self.model_complexity, "min_detection_confidence": self.min_detection_confidence,
                "box_padding": self.box_padding, "estimator": "mediapipe 0.10.14 BlazePose"}
