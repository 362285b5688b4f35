"""``partsynth serve``: pre-annotation as a service, Label Studio's ML backend protocol.

Label Studio calls an ML backend over HTTP (the API that label-studio-ml-backend
documents): ``GET /health``, ``POST /setup`` (the project's labeling config), ``POST
/predict`` ({"tasks": [...]}, answered {"results": [one prediction per task]}) and ``POST
/webhook`` (an annotation created or updated).  Served here with FastAPI and uvicorn, which
Prefect already brings; label-studio-ml-backend itself pins label-studio-sdk and Flask
versions apart from ours, and its protocol is four small JSON endpoints.

A prediction is the refiner's (or the partition labeller's) label map of the task's photo
and keypoints (:mod:`pipeline.annotation.ml_tasks`; an image-only task gets its person from
BlazePose first), as one ``brushlabels`` result per class, with ``score`` the lowest
per-person confidence (``mean_max_prob``), so that Label Studio sorts the worst first.  A
submitted annotation goes into the labelled folder ``--labelled-out`` through the same
path as ``partsynth import-labels`` (under its lock), where ``train-refiner`` and ``run``
read it.  A bad request gets {"error", "field"} with status 400 (422 for a body that is
not JSON), never a traceback; the server keeps serving.
"""
from __future__ import annotations

import logging
import threading
from pathlib import Path

import numpy as np
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from pipeline.annotation.common import LabelledWriter
from pipeline.annotation.label_studio import label_map_results, results_label_map
from pipeline.annotation.ml_tasks import TaskError, TaskPeople, check_label_config, task_people
from pipeline.errors import ConfigError, DataError

log = logging.getLogger("partsynth.serve")
SAVED_ACTIONS = ("ANNOTATION_CREATED", "ANNOTATION_UPDATED")


def _json_body(body, field: str = "body") -> dict:
    if not isinstance(body, dict):
        raise TaskError(field, f"expected a JSON object, got {type(body).__name__}")
    return body


class Backend:
    """The model side of the server: one labeller (not thread-safe: one request at a time
    uses it), the photos' document root, the labelled folder annotations go to."""

    def __init__(self, labeller, model_version: str, document_root: Path, labelled_out: Path | None):
        self.labeller, self.model_version = labeller, model_version
        self.document_root, self.labelled_out = Path(document_root), labelled_out
        self.lock = threading.Lock()
        self._pose = None

    @property
    def label_set(self) -> str:
        return self.labeller.label_set

    def _estimated(self, task: TaskPeople, where: str) -> TaskPeople:
        """An image-only task's person from BlazePose, its mask kept for the labeller."""
        from pycocotools import mask as mask_utils

        from pipeline.blazepose import BlazePose, mediapipe_pose
        from pipeline.formats import files
        from pipeline.formats.records import PersonRecord

        try:
            mediapipe_pose("an image-only task needs keypoints from BlazePose")
        except ConfigError as e:
            raise TaskError(f"{where}.data.keypoints", str(e)) from None
        if self._pose is None:
            self._pose = BlazePose()
        rgb = files.read_image(task.photo)
        found = self._pose.estimate(rgb, path=task.photo)[0]
        if isinstance(found, str):
            return task
        rle = mask_utils.encode(np.asfortranarray((found.mask >= 0.5).astype(np.uint8)))
        rec = PersonRecord(task.photo, rgb.shape[:2], f"{task.ids[0] if task.ids else 'task'}/0", "blazepose",
                           keypoints=found.keypoints, keypoints_derived=found.derived,
                           meta={"rle": {"size": list(rle["size"]), "counts": rle["counts"].decode("ascii")}})
        return TaskPeople(task.photo, [rec], [rec.person_id])

    def predict_task(self, task: dict, where: str) -> dict:
        """One task's prediction: {"result": brush results, "score", "model_version"}."""
        people = task_people(task, self.document_root, where)
        if not people.people:
            people = self._estimated(people, where)
        label_map, score = None, 0.0
        if people.people:
            with self.lock:
                try:
                    item, label_map = self.labeller.label_image(people.photo, people.people)
                except DataError as e:
                    raise TaskError(f"{where}.data.image", e.problem) from None
            confidences = [p.mean_max_prob for p in item.labelled if p.mean_max_prob is not None]
            score = min(confidences) if confidences else 0.0
        result = [] if label_map is None else label_map_results(label_map, self.label_set)
        return {"result": result, "score": round(float(score), 5), "model_version": self.model_version}

    def save_annotation(self, body: dict) -> dict:
        """A submitted annotation into the labelled folder (the import path, under its lock)."""
        if body.get("action") not in SAVED_ACTIONS:
            return {"status": "ignored", "action": body.get("action")}
        if self.labelled_out is None:
            raise TaskError("action", "this server keeps no annotations (start it with --labelled-out)")
        task = _json_body(body.get("task"), "task")
        annotation = _json_body(body.get("annotation"), "annotation")
        if annotation.get("was_cancelled"):
            return {"status": "ignored", "action": "cancelled annotation"}
        people = task_people(task, self.document_root, "task")
        where = f"task {task.get('id', '?')}"
        try:
            label_map = results_label_map(annotation.get("result") or [], self.label_set, where)
        except DataError as e:
            raise TaskError("annotation.result", e.problem) from None
        meta = people.meta(self.label_set)
        if not people.people:                # an image-only task: its person has no keypoints
            meta["people"] = [{"person_id": f"{task.get('id', 'task')}/0", "split": "train", "confidence": None,
                               "keypoints": None}]
        try:
            with LabelledWriter(self.labelled_out, replace=True) as writer:
                writer.add(meta, label_map, where)
                writer.finish("Label Studio (partsynth serve)", Path(where))
        except (DataError, ConfigError) as e:
            raise TaskError("annotation", str(e)) from None
        return {"status": "saved", "image": str(people.photo), "labelled_out": str(self.labelled_out),
                "people": len(meta["people"])}


def create_app(backend: Backend) -> FastAPI:
    """The FastAPI app of :class:`Backend` (the four endpoints of the module docstring)."""
    app = FastAPI(title="partsynth ML backend", version=backend.model_version)

    @app.exception_handler(TaskError)
    async def task_error(request: Request, e: TaskError):
        log.warning("%s %s: %s", request.method, request.url.path, e)
        return JSONResponse({"error": e.problem, "field": e.field}, status_code=400)

    @app.exception_handler(RequestValidationError)
    async def not_json(request: Request, e: RequestValidationError):
        first = (e.errors() or [{}])[0]
        return JSONResponse({"error": first.get("msg", "invalid request"),
                             "field": ".".join(str(x) for x in first.get("loc", ["body"]))}, status_code=422)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, e: Exception):
        log.exception("%s %s failed", request.method, request.url.path)
        return JSONResponse({"error": f"{type(e).__name__}: {e}", "field": None}, status_code=500)

    @app.get("/health")
    @app.get("/")
    def health() -> dict:
        return {"status": "UP", "model_class": "partsynth", "model_version": backend.model_version,
                "label_set": backend.label_set}

    @app.post("/setup")
    def setup(body: dict) -> dict:
        check_label_config(body.get("schema"), backend.label_set)
        return {"model_version": backend.model_version}

    @app.post("/predict")
    def predict(body: dict) -> dict:
        check_label_config(body.get("label_config"), backend.label_set)
        tasks = body.get("tasks")
        if not isinstance(tasks, list):
            raise TaskError("tasks", "a list of Label Studio tasks")
        return {"results": [backend.predict_task(t, f"tasks[{i}]") for i, t in enumerate(tasks)],
                "model_version": backend.model_version}

    @app.post("/webhook")
    def webhook(body: dict) -> dict:
        return backend.save_annotation(body)

    return app
