"""``partsynth serve``: the Label Studio ML backend (:mod:`flows.ml_backend`) on uvicorn."""
from __future__ import annotations

from pathlib import Path


def make_backend(checkpoint: str | None, labels: str | None, document_root: Path, labelled_out: Path | None,
                 engine: str = "torch", threads: int = 1, k: int = 3):
    """A :class:`flows.ml_backend.Backend` with the refiner ``checkpoint`` (its prior bank
    built from its training data), or with ``labels="pascal6"`` and no checkpoint the
    partition labeller.  Raises CheckpointError / ConfigError in one line."""
    from flows.ml_backend import Backend
    from pipeline.formats.files import file_sha256
    from refine_net.config import SynthConfig
    from refine_net.partition_labeller import LABELLER, PartitionLabeller
    from refine_net.synthesize import Synthesizer

    cfg = SynthConfig(checkpoint=checkpoint, labels=labels, data=str(document_root),
                      out=str(labelled_out or document_root), engine=engine, threads_per_task=threads, k=k)
    if checkpoint is None:
        return Backend(PartitionLabeller(cfg), f"partsynth-{LABELLER}", document_root, labelled_out)
    return Backend(Synthesizer(cfg), f"partsynth-{file_sha256(checkpoint)[:12]}", document_root, labelled_out)


def cmd_serve(args) -> int:
    import uvicorn

    from flows.ml_backend import create_app

    backend = make_backend(args.checkpoint, args.labels, args.document_root, args.labelled_out, args.engine,
                           args.threads, args.k)
    print(f"partsynth ML backend ({backend.model_version}, {backend.label_set}) on http://{args.host}:{args.port}; "
          f"photos under {args.document_root}" + (f", annotations into {args.labelled_out}" if args.labelled_out
                                                  else ", annotations not kept (--labelled-out)"), flush=True)
    uvicorn.run(create_app(backend), host=args.host, port=args.port, log_level=args.log_level)
    return 0


def add_serve_command(sub) -> None:
    s = sub.add_parser("serve", help="pre-annotation as a service: a Label Studio ML backend (predict, webhook)")
    s.add_argument("--checkpoint", help="refiner checkpoint whose labels are the predictions")
    s.add_argument("--labels", choices=["pascal6"],
                   help="pascal6 without --checkpoint: body parts from each person's mask and skeleton")
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, default=9090)
    s.add_argument("--document-root", type=Path, default=Path("/"),
                   help="Label Studio's LOCAL_FILES_DOCUMENT_ROOT: local-files URLs are read under it (default /)")
    s.add_argument("--labelled-out", type=Path,
                   help="labelled partsynth folder that submitted annotations go into (train-refiner, run and "
                        "synthesize --extra-bank-data read it); without it the webhook keeps nothing")
    s.add_argument("--engine", choices=["torch", "onnx"], default="torch")
    s.add_argument("--threads", type=int, default=1, help="torch (or ONNX Runtime) threads for the refiner")
    s.add_argument("--k", type=int, default=3, help="nearest neighbours per prior")
    s.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"])
    s.set_defaults(func=cmd_serve)
