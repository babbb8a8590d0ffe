"""`onda quantize`, `onda run`, `onda verify`: the numeric foundation's commands."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np


BACKEND_HELP = ("golden | emulator | rtl | board (default: emulator for a compiled .onda program, golden for a "
                ".tflite)")
DEVICE_HELP = "with --backend board: the board's serial port (/dev/ttyUSB0) or socket://HOST:PORT of `onda board sim`"


def add_commands(sub) -> None:
    p = sub.add_parser("quantize", help="quantize a Keras CNN to a full-int8 .tflite model")
    p.add_argument("model", help="a .keras/.h5 file or an application name (resnet50, resnet101, resnet152, vgg16, vgg19)")
    p.add_argument("-o", "--output", required=True, help="output .tflite file")
    p.add_argument("--weights", default="random", help="imagenet | random (seeded) | PATH to a weights file")
    p.add_argument("--seed", type=int, default=0, help="seed for random weights and random calibration")
    p.add_argument("--include-top", action="store_true", help="keep the classifier (default: the featurizer)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--calibration", metavar="DIR", help="directory of calibration images")
    g.add_argument("--random-calibration", type=int, metavar="N", help="N random calibration images")
    p.add_argument("--max-calibration", type=int, default=100, help="use at most this many images from DIR")
    p.set_defaults(func=cmd_quantize)

    p = sub.add_parser("run", help="run a model on a backend: .npy in, .npy (or .npz) out")
    p.add_argument("model", help="a .tflite model or a compiled .onda program")
    p.add_argument("--backend", help=BACKEND_HELP)
    p.add_argument("--device", help=DEVICE_HELP)
    p.add_argument("--input", required=True, help=".npy with the model's input dtype and shape [N, ...]")
    p.add_argument("-o", "--output", required=True,
                   help=".npy for a model's one output; .npz for every output, by tensor name (any model)")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("verify", help="compare a backend with TFLite's reference kernels, tensor by tensor "
                                      "(exit 1 on any mismatch)")
    p.add_argument("model", help="a .tflite model or a compiled .onda program (which holds its source model)")
    p.add_argument("--backend", help=BACKEND_HELP)
    p.add_argument("--device", help=DEVICE_HELP)
    p.add_argument("--images", type=int, default=2, help="random inputs to compare")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_verify)


def cmd_quantize(args) -> int:
    from ..errors import CommandError
    from ..quantizer import QuantizeError, build_model, directory_calibration, quantize, random_calibration

    try:
        print(f"building {args.model} ({args.weights} weights, "
              f"{'with top' if args.include_top else 'featurizer'})", file=sys.stderr)
        model, preprocess = build_model(args.model, args.weights, args.seed, args.include_top)
        if args.calibration:
            calib = directory_calibration(model, preprocess, args.calibration, args.max_calibration)
        else:
            calib = random_calibration(model, preprocess, args.random_calibration or 8, args.seed)
        data = quantize(model, calib)
    except QuantizeError as e:
        raise CommandError(str(e)) from None
    Path(args.output).write_bytes(data)
    print(f"wrote {args.output} ({len(data) / 1e6:.1f} MB)", file=sys.stderr)
    return 0


def _load(args):
    from ..errors import CommandError
    from ..frontend import FrontendError
    from ..runtime import BackendError, backend_for, get_backend

    if args.backend is None:
        args.backend = backend_for(args.model)
    try:
        options = {"device": args.device} if getattr(args, "device", None) else {}
        if options and args.backend != "board":
            raise CommandError(f"--device is for --backend board, not {args.backend!r}")
        return get_backend(args.backend, **options).load(args.model)
    except (FrontendError, BackendError, ValueError) as e:
        raise CommandError(str(e)) from None


def cmd_run(args) -> int:
    from ..errors import CommandError
    from ..runtime import BackendError

    loaded = _load(args)
    out = Path(args.output)
    names = [t.name for t in loaded.outputs]
    if out.suffix != ".npz" and len(names) > 1:
        raise CommandError(f"the model has {len(names)} outputs ({', '.join(names)}): give -o a .npz path")
    try:
        x = np.load(args.input, allow_pickle=False)
    except Exception as e:
        raise CommandError(f"{args.input}: cannot read .npy: {e}") from None
    try:
        outputs = loaded.run([x])
    except (BackendError, ValueError) as e:
        raise CommandError(str(e)) from None
    if out.suffix == ".npz":
        np.savez(out, **dict(zip(names, outputs)))
        for name, y in zip(names, outputs):
            print(f"wrote {out}[{name!r}]: {y.dtype} {list(y.shape)}", file=sys.stderr)
    else:
        np.save(out, outputs[0])
        print(f"wrote {out}: {outputs[0].dtype} {list(outputs[0].shape)}", file=sys.stderr)
    return 0


def cmd_verify(args) -> int:
    from ..errors import CommandError
    from ..frontend import FrontendError
    from ..runtime import BackendError
    from ..verify import compare, format_table

    loaded = _load(args)
    try:
        rows = compare(args.model, args.backend, args.images, args.seed, loaded=loaded)
    except (FrontendError, BackendError, ValueError) as e:
        raise CommandError(str(e)) from None
    print(f"{args.model} on backend {args.backend!r} against TFLite BUILTIN_REF, {args.images} random input(s):")
    print(format_table(rows))
    if hasattr(loaded, "cycle_report"):
        print(loaded.cycle_report())
    return 0 if all(r.ok for r in rows) else 1  # 2 stays argparse's: a usage error
