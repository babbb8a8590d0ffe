"""`make demo`: the default ResNet50 pipeline and the shipped digits classifier, deployed on the default
backend, scored over TLS with a key.

Steps: build (or reuse from build/demo/) the ResNet50 pipeline zip and the digits pipeline zip; register them
in a workspace (build/demo/workspace); deploy both as one local service with a fresh self-signed certificate;
through gRPC with the service's primary key, score the sample photos shipped in the repo (top-5, latency, and
the engine's modelled latency on the default board: the cycle model at its clock) and held-out digits rendered
as PNGs (true and predicted labels: answers that mean something offline); delete the service.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

BUILD = Path("build") / "demo"
SERVICE = "onda-demo"
DIGITS_SERVICE = "onda-demo-digits"


def main(workspace: str | None = None, weights: str = "auto") -> int:
    from .models.digits.pipeline import build_pipeline, held_out_pngs
    from .pipeline.resnet50 import build_resnet50, sample_images
    from .runtime import default_backend
    from .service.tls import write_self_signed
    from .workspace import Model, Webservice, Workspace

    t_start = time.perf_counter()
    say = lambda s: print(s, flush=True)  # noqa: E731
    zip_path, used = build_resnet50(BUILD / "resnet50.zip", weights=weights, say=say)
    digits_zip = build_pipeline(BUILD / "digits.zip")
    engine, engine_ms = modelled_latency(zip_path)
    ws = Workspace(workspace or BUILD / "workspace")
    for name in (SERVICE, DIGITS_SERVICE):
        if name in {s.name for s in ws.services()}:  # left over from an interrupted run
            ws.delete_service(name)
    model = Model.register(ws, zip_path, "resnet50", description=f"default ResNet50 pipeline ({used} weights)")
    digits = Model.register(ws, digits_zip, "digits", description="the shipped digits classifier (int8)")
    cert, key = write_self_signed(BUILD / "tls")
    config = Webservice.deploy_configuration(ssl_enabled=True, ssl_cert_pem_file=str(cert), ssl_key_pem_file=str(key),
                                             backend=default_backend())
    say(f"deploy: services {SERVICE} (model {model.id}) and {DIGITS_SERVICE} (model {digits.id}), backend "
        f"{default_backend()}, TLS (self-signed), keys on")
    service = Webservice.deploy_from_model(ws, SERVICE, [model], None, config)
    digits_service = None
    try:
        digits_service = Webservice.deploy_from_model(ws, DIGITS_SERVICE, [digits], None, config)
        from .client import PredictionClient, top_k

        primary, _ = service.get_keys()
        say(f"service: {service.scoring_uri}, state {service.state}")
        labels = model_labels(zip_path)
        if used != "imagenet":
            say("note: random weights (no ImageNet weights offline): the classes below are meaningless; the digits "
                "after them are not")
        if labels is None:
            say("note: no ImageNet label file is available offline (Keras downloads it); showing class indices")
        opts = dict(use_ssl=True, root_certificates=cert.read_bytes(), timeout=300)
        with PredictionClient(service.ipAddress, service.port, access_token=primary, **opts) as client:
            client.score_image(sample_images()[0])  # warm-up: first-call channel and TLS set-up
            for image in sample_images():
                scores = client.score_image(image)
                r = client.last
                say(f"\n{image.name}: {r.latency_s * 1e3:.1f} ms end to end, backend {r.compute_s * 1e3:.1f} ms "
                    f"(request {r.request_id[:8]}); the engine on {engine}: {engine_ms:.1f} ms (cycle model)")
                for i, label, p in top_k(scores, 5, labels):
                    say(f"  {p:7.4f}  {i:4d}  {label}")
        say("\nheld-out handwritten digits (scikit-learn's, never seen in training), 16x16 PNGs:")
        right = 0
        digits_pngs = held_out_pngs(BUILD / "digits")
        with PredictionClient(digits_service.ipAddress, digits_service.port, access_token=digits_service.get_keys()[0],
                              **opts) as client:
            client.score_image(digits_pngs[0][0])  # warm-up
            for path, truth in digits_pngs:
                scores = client.score_image(path)
                (guess, _, p), = top_k(scores, 1)
                right += guess == truth
                say(f"  {path.name}: true {truth}, predicted {guess} ({p:.3f}){'' if guess == truth else '  <- wrong'}"
                    f", {client.last.latency_s * 1e3:.1f} ms")
        say(f"  {right} of {len(digits_pngs)} right")
    finally:
        for s in (service, digits_service):
            if s is not None:
                s.delete()
        model.delete()
        digits.delete()
        say(f"\nservices {SERVICE} and {DIGITS_SERVICE} deleted; demo done in {time.perf_counter() - t_start:.0f} s")
    return 0


def modelled_latency(zip_path) -> tuple[str, float]:
    """The default board's engine and its modelled time for one image of the pipeline's featurizer, in ms:
    the program's cycles (the cycle model) at the engine's clock."""
    from .pipeline import ModelDefinition
    from .runtime.emulator import EmulatorBackend

    featurizer = BUILD / "featurizer.tflite"
    data = bytes(ModelDefinition.load(zip_path).featurizer.tflite)
    if not featurizer.is_file() or featurizer.read_bytes() != data:
        featurizer.write_bytes(data)
    m = EmulatorBackend().load(featurizer)
    cfg = m.config
    return f"{cfg.name} at {cfg.clock_mhz:g} MHz", m.cycle_trace().total / (cfg.clock_mhz * 1e3)


def model_labels(zip_path) -> list[str] | None:
    from .pipeline import ModelDefinition

    return ModelDefinition.load(zip_path).labels


if __name__ == "__main__":
    from .pipeline import PipelineError
    from .quantizer import QuantizeError
    from .workspace import WorkspaceError

    try:
        sys.exit(main(weights=os.environ.get("ONDA_DEMO_WEIGHTS", "auto")))
    except (QuantizeError, PipelineError, WorkspaceError) as e:
        print(f"demo: error: {e}", file=sys.stderr)
        sys.exit(1)
