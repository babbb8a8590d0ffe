"""`make demo`: the default ResNet50 pipeline, deployed on the default backend, scored over TLS with a key.

Steps: build (or reuse from build/demo/) the pipeline zip; register it in a workspace (build/demo/workspace);
deploy it as a local service with a fresh self-signed certificate; score the sample photos shipped in the
repo through gRPC with the service's primary key; print top-5 and latency per image; delete the service.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

BUILD = Path("build") / "demo"
SERVICE = "onda-demo"


def main(workspace: str | None = None, weights: str = "auto") -> int:
    from .pipeline.resnet50 import build_resnet50, sample_images
    from .runtime import default_backend
    from .service.tls import write_self_signed
    from .workspace import Model, Webservice, Workspace

    t_start = time.perf_counter()
    say = lambda s: print(s, flush=True)  # noqa: E731
    zip_path, used = build_resnet50(BUILD / "resnet50.zip", weights=weights, say=say)
    ws = Workspace(workspace or BUILD / "workspace")
    if SERVICE in {s.name for s in ws.services()}:  # left over from an interrupted run
        ws.delete_service(SERVICE)
    model = Model.register(ws, zip_path, "resnet50", description=f"default ResNet50 pipeline ({used} weights)")
    cert, key = write_self_signed(BUILD / "tls")
    config = Webservice.deploy_configuration(ssl_enabled=True, ssl_cert_pem_file=str(cert), ssl_key_pem_file=str(key),
                                             backend=default_backend())
    say(f"deploy: service {SERVICE}, model {model.id}, backend {default_backend()}, TLS (self-signed), keys on")
    service = Webservice.deploy_from_model(ws, SERVICE, [model], None, config)
    try:
        from .client import PredictionClient, top_k

        primary, _ = service.get_keys()
        say(f"service: {service.scoring_uri}, state {service.state}")
        labels = model_labels(zip_path)
        if used != "imagenet":
            say("note: random weights (no ImageNet weights offline): the classes below are meaningless")
        if labels is None:
            say("note: no ImageNet label file is available offline (Keras downloads it); showing class indices")
        with PredictionClient(service.ipAddress, service.port, use_ssl=True, access_token=primary,
                              root_certificates=cert.read_bytes(), timeout=300) as client:  # simulated engines are slow
            client.score_image(sample_images()[0])  # warm-up: first-call channel and TLS set-up
            for image in sample_images():
                scores = client.score_image(image)
                r = client.last
                say(f"\n{image.name}: {r.latency_s * 1e3:.1f} ms end to end, backend {r.compute_s * 1e3:.1f} ms "
                    f"(request {r.request_id[:8]})")
                for i, label, p in top_k(scores, 5, labels):
                    say(f"  {p:7.4f}  {i:4d}  {label}")
    finally:
        service.delete()
        model.delete()
        say(f"\nservice {SERVICE} deleted; demo done in {time.perf_counter() - t_start:.0f} s")
    return 0


def model_labels(zip_path) -> list[str] | None:
    from .pipeline import ModelDefinition

    return ModelDefinition.load(zip_path).labels


if __name__ == "__main__":
    from .pipeline import PipelineError
    from .quantize import QuantizeError
    from .workspace import WorkspaceError

    try:
        sys.exit(main(weights=os.environ.get("ONDA_DEMO_WEIGHTS", "auto")))
    except (QuantizeError, PipelineError, WorkspaceError) as e:
        print(f"demo: error: {e}", file=sys.stderr)
        sys.exit(1)
