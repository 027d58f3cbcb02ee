"""A PyTorch U²-Net and U²-NetP written from the paper, timed on the GPU beside seglab's JAX runs.

    python benchmarks/torch_u2net.py --out u2net_torch.json [--keras-json u2net_jax.json]
    python benchmarks/torch_u2net.py --cpu-smoke --out /tmp/u2net_torch.json

The network is built from the description and Table 1 of Qin et al., 'U^2-Net: Going deeper
with nested U-structure for salient object detection', Pattern Recognition 106 (2020): RSU-L
blocks (an input conv-BN-ReLU, a U of height L with 2x2 ceil-mode max-pooling and bilinear
upsampling, a dilated bottom unit, the residual sum); RSU-4F replaces pooling by dilations
1, 2, 4, 8; six encoder and five decoder stages with the (in, mid, out) channels of the table;
3x3 side convolutions, upsampled to the input, fused by a 1x1 convolution; a sigmoid on the
fused map and the six side maps. The input is 0..255 RGB scaled to [0, 1] inside, as seglab's
models do.

Parameter counts are checked against the paper's sizes (44.0 M / 176.3 MB and 1.13 M / 4.7 MB)
and against seglab's Keras models (``--keras-json``: the JSON of ``gpu_u2net.py``; else they
are counted in a CPU-only subprocess under KERAS_BACKEND=jax).

Measured for each model, autocast dtype (float16 with a GradScaler, bfloat16) and memory
format (contiguous, channels_last):

- train images/s: Adam (lr 1e-3, eps 1e-8), BCE summed over the seven outputs, batch 12 at
  320x320 on one batch kept on the GPU; warm-up steps (cuDNN autotuning) left out, then the
  timed steps queue up and one ``torch.cuda.synchronize`` ends them;
- inference FPS at batch 1: ``torch.no_grad``, autocast, one synchronize after every image
  (a per-image loop, as the paper's 30 / 40 FPS on a GTX 1080 Ti); float32 too.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

REPO = Path(__file__).resolve().parents[1]
PAPER = {
    "u2net": {"fps_1080ti": 30.0, "params_m": 44.0, "size_mb": 176.3},
    "u2netp": {"fps_1080ti": 40.0, "params_m": 1.13, "size_mb": 4.7},
}
# Paper, Table 1: (block height L, dilated "F" variant, in, mid, out) per stage.
STAGES = {
    "u2net": {
        "encoder": [
            (7, False, 3, 32, 64),
            (6, False, 64, 32, 128),
            (5, False, 128, 64, 256),
            (4, False, 256, 128, 512),
            (4, True, 512, 256, 512),
            (4, True, 512, 256, 512),
        ],
        # De_5 … De_1
        "decoder": [
            (4, True, 1024, 256, 512),
            (4, False, 1024, 128, 256),
            (5, False, 512, 64, 128),
            (6, False, 256, 32, 64),
            (7, False, 128, 16, 64),
        ],
    },
    "u2netp": {
        "encoder": [(7, False, 3, 16, 64)]
        + [
            (h, f, 64, 16, 64)
            for h, f in [(6, False), (5, False), (4, False), (4, True), (4, True)]
        ],
        "decoder": [
            (h, f, 128, 16, 64)
            for h, f in [(4, True), (4, False), (5, False), (6, False), (7, False)]
        ],
    },
}


class ConvBnRelu(nn.Sequential):
    def __init__(self, channels_in, channels_out, dilation=1):
        super().__init__(
            nn.Conv2d(channels_in, channels_out, 3, padding=dilation, dilation=dilation),
            nn.BatchNorm2d(channels_out),
            nn.ReLU(inplace=True),
        )


def _upsample_to(x, reference):
    return F.interpolate(x, size=reference.shape[-2:], mode="bilinear", align_corners=False)


class ResidualUBlock(nn.Module):
    """RSU-L: input unit, a U of height L (pooled, or dilated for RSU-4F), residual sum."""

    def __init__(self, height, dilated, channels_in, channels_mid, channels_out):
        super().__init__()
        self.dilated = dilated
        self.project = ConvBnRelu(channels_in, channels_out)
        if dilated:
            down_dilations = [2**i for i in range(height)]  # 1, 2, 4, 8
            up_dilations = down_dilations[-2::-1]  # 4, 2, 1
        else:
            down_dilations = [1] * (height - 1) + [2]  # the bottom unit is dilated
            up_dilations = [1] * (height - 1)
        widths_in = [channels_out] + [channels_mid] * (height - 1)
        self.down = nn.ModuleList(
            ConvBnRelu(w, channels_mid, d) for w, d in zip(widths_in, down_dilations, strict=True)
        )
        self.up = nn.ModuleList(
            ConvBnRelu(
                2 * channels_mid, channels_out if i == len(up_dilations) - 1 else channels_mid, d
            )
            for i, d in enumerate(up_dilations)
        )

    def forward(self, x):
        residual = self.project(x)
        skips = []
        h = residual
        for level, unit in enumerate(self.down):
            h = unit(h)
            if level < len(self.down) - 1:
                skips.append(h)
                # Pool between the units of the top L-2 levels; never in RSU-4F.
                if not self.dilated and level < len(self.down) - 2:
                    h = F.max_pool2d(h, 2, 2, ceil_mode=True)
        for step, unit in enumerate(self.up):
            skip = skips[-1 - step]
            if step > 0 and not self.dilated:
                h = _upsample_to(h, skip)
            h = unit(torch.cat([h, skip], dim=1))
        return h + residual


class U2Net(nn.Module):
    """U²-Net (``"u2net"``) or U²-NetP (``"u2netp"``); returns logits [fused, d1 … d6]."""

    def __init__(self, variant="u2net"):
        super().__init__()
        config = STAGES[variant]
        self.encoder = nn.ModuleList(ResidualUBlock(*stage) for stage in config["encoder"])
        self.decoder = nn.ModuleList(ResidualUBlock(*stage) for stage in config["decoder"])
        # Side maps from De_1 … De_5 and En_6.
        side_widths = [stage[-1] for stage in config["decoder"][::-1]] + [config["encoder"][-1][-1]]
        self.sides = nn.ModuleList(nn.Conv2d(w, 1, 3, padding=1) for w in side_widths)
        self.fuse = nn.Conv2d(len(side_widths), 1, 1)

    def forward(self, images):
        x = images / 255.0
        features = []
        for index, stage in enumerate(self.encoder):
            if index > 0:
                x = F.max_pool2d(x, 2, 2, ceil_mode=True)
            x = stage(x)
            features.append(x)
        decoded = [features[-1]]  # En_6 feeds the sixth side map
        for stage, skip in zip(self.decoder, features[-2::-1], strict=True):
            x = stage(torch.cat([_upsample_to(x, skip), skip], dim=1))
            decoded.append(x)
        decoded.reverse()  # De_1, …, De_5, En_6
        sides = [self.sides[0](decoded[0])]
        sides += [
            _upsample_to(side(f), sides[0])
            for side, f in zip(self.sides[1:], decoded[1:], strict=True)
        ]
        return [self.fuse(torch.cat(sides, dim=1)), *sides]


def count_parameters(model):
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    # BatchNorm's running mean and variance, as Keras counts them (not num_batches_tracked).
    buffers = sum(
        b.numel() for n, b in model.named_buffers() if not n.endswith("num_batches_tracked")
    )
    return {"trainable": trainable, "with_bn_statistics": trainable + buffers}


_KERAS_COUNT = """
import json, sys
sys.path.insert(0, {repo!r})
import numpy as np
from seglab.models.u2net import u2net, u2netp
counts = {{}}
for name, build in (("u2net", u2net), ("u2netp", u2netp)):
    model = build(num_classes=1, input_shape=(320, 320, 3), head="salient")
    counts[name] = {{"trainable": int(sum(np.prod(w.shape) for w in model.trainable_weights)),
                     "with_bn_statistics": int(model.count_params())}}
print(json.dumps(counts))
"""


def keras_counts(keras_json):
    """seglab's Keras parameter counts: from gpu_u2net.py's JSON, else counted on the CPU."""
    if keras_json and Path(keras_json).is_file():
        runs = json.loads(Path(keras_json).read_text()).get("runs", [])
        counts = {
            r["model"]: {
                "trainable": r["params_trainable"],
                "with_bn_statistics": r["params_total"],
            }
            for r in runs
            if "params_trainable" in r
        }
        if counts:
            return counts, f"read from {keras_json}"
    env = {**os.environ, "KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu"}
    try:
        done = subprocess.run(
            [sys.executable, "-c", _KERAS_COUNT.format(repo=str(REPO))],
            capture_output=True,
            text=True,
            timeout=180,
            env=env,
            check=True,
        )
        return json.loads(done.stdout.strip().splitlines()[-1]), "counted on the CPU (JAX)"
    except (OSError, subprocess.SubprocessError, ValueError, IndexError) as error:
        detail = getattr(error, "stderr", None) or str(error)
        return {}, f"not counted: {type(error).__name__}: {detail.strip()[-300:]}"


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def measure_train(model, device, dtype, channels_last, args):
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    model.to(memory_format=memory_format).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, eps=1e-8)
    scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)
    generator = torch.Generator(device="cpu").manual_seed(0)
    shape = (args.batch, 3, args.size, args.size)
    images = (255 * torch.rand(shape, generator=generator)).to(device, memory_format=memory_format)
    mask = (torch.rand((args.batch, 1, args.size, args.size), generator=generator) > 0.5).float()
    mask = mask.to(device)

    def step():
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
            logits = model(images)
        # The loss in float32 on float32 probabilities, as seglab's float32 outputs give it.
        loss = sum(F.binary_cross_entropy(torch.sigmoid(o.float()), mask) for o in logits)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        return loss

    first = step().item()
    for _ in range(args.train_warmup):
        step()
    _sync(device)
    start = time.perf_counter()
    for _ in range(args.train_steps):
        loss = step()
    _sync(device)
    seconds = time.perf_counter() - start
    return {
        "batch": args.batch,
        "steps": args.train_steps,
        "images_per_s": args.batch * args.train_steps / seconds,
        "mean_step_ms": 1000 * seconds / args.train_steps,
        "loss_first_last": [first, loss.item()],
    }


@torch.no_grad()
def measure_inference(model, device, dtype, channels_last, args, name):
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    model.to(memory_format=memory_format).eval()
    generator = torch.Generator(device="cpu").manual_seed(1)
    image = 255 * torch.rand((1, 3, args.size, args.size), generator=generator)
    image = image.to(device, memory_format=memory_format)

    def forward():
        with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
            fused = torch.sigmoid(model(image)[0].float())
        _sync(device)
        return fused

    for _ in range(args.infer_warmup):
        forward()
    times = []
    for _ in range(args.infer_steps):
        start = time.perf_counter()
        forward()
        times.append(time.perf_counter() - start)
    fps = len(times) / sum(times)
    return {
        "calls": len(times),
        "images_per_s": fps,
        "median_ms": 1000 * statistics.median(times),
        "min_ms": 1000 * min(times),
        "vs_paper_fps": fps / PAPER[name]["fps_1080ti"],
    }


DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": None}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--out", required=True, help="JSON file to write")
    parser.add_argument("--models", default="u2net,u2netp")
    parser.add_argument(
        "--train-dtypes", help="autocast dtypes (default float16,bfloat16; float32 on a CPU)"
    )
    parser.add_argument(
        "--infer-dtypes", help="default float16,bfloat16,float32 (float32 on a CPU)"
    )
    parser.add_argument("--memory-formats", default="contiguous,channels_last")
    parser.add_argument("--size", type=int, default=320)
    parser.add_argument("--batch", type=int, default=12)
    parser.add_argument("--train-warmup", type=int, default=10)
    parser.add_argument("--train-steps", type=int, default=30)
    parser.add_argument("--infer-warmup", type=int, default=20)
    parser.add_argument("--infer-steps", type=int, default=100)
    parser.add_argument("--keras-json", help="gpu_u2net.py's JSON, for seglab's parameter counts")
    parser.add_argument("--budget-s", type=float, default=None, help="start nothing after this")
    parser.add_argument(
        "--cpu-smoke",
        action="store_true",
        help="on the CPU, tiny sizes and step counts (float32 unless dtypes are given)",
    )
    args = parser.parse_args(argv)
    args.device = "cpu" if args.cpu_smoke else "cuda"
    if args.cpu_smoke:
        args.size, args.batch = 64, 2
        args.train_warmup, args.train_steps = 1, 2
        args.infer_warmup, args.infer_steps = 1, 3
    # Reduced-precision convolutions on a CPU take minutes: only float32 unless asked.
    default = "float32" if args.cpu_smoke else None
    args.train_dtypes = args.train_dtypes or default or "float16,bfloat16"
    args.infer_dtypes = args.infer_dtypes or default or "float16,bfloat16,float32"
    return args


def _split(text):
    return [item.strip() for item in text.split(",") if item.strip()]


def main(argv=None):
    args = parse_args(argv)
    started = time.perf_counter()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("no CUDA device; use --cpu-smoke to check the script on a CPU")
    torch.backends.cudnn.benchmark = True
    torch.manual_seed(0)
    result = {
        "benchmark": "benchmarks/torch_u2net.py",
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "machine": {
            "device": torch.cuda.get_device_name()
            if device.type == "cuda"
            else platform.processor(),
            "python": platform.python_version(),
            "torch": torch.__version__,
            "cuda": torch.version.cuda,
            "cudnn": torch.backends.cudnn.version() if device.type == "cuda" else None,
            "cpu_count": os.cpu_count(),
        },
        "settings": {k: v for k, v in vars(args).items() if k not in ("out", "keras_json")},
        "parameters": {},
        "runs": [],
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)

    def save():
        out.write_text(json.dumps(result, indent=1) + "\n")

    keras, source = keras_counts(args.keras_json)
    result["parameters"]["keras_source"] = source
    mismatches = []
    models = {}
    for name in _split(args.models):
        model = U2Net(name)
        counts = count_parameters(model)
        paper_m = PAPER[name]["params_m"]
        entry = {
            "torch": counts,
            "torch_params_m": counts["trainable"] / 1e6,
            "torch_size_mb_float32": 4 * counts["trainable"] / 1e6,
            "paper": PAPER[name],
            "keras": keras.get(name),
        }
        # The paper rounds to 3 significant figures.
        if abs(counts["trainable"] / 1e6 - paper_m) > 0.006 * paper_m:
            mismatches.append(f"{name}: {counts['trainable']} trainable vs the paper's {paper_m} M")
        if keras.get(name) and keras[name] != counts:
            mismatches.append(f"{name}: torch {counts} vs seglab Keras {keras[name]}")
        result["parameters"][name] = entry
        print(
            f"{name}: torch {counts}, seglab keras {keras.get(name)} ({source}), paper "
            f"{paper_m} M / {PAPER[name]['size_mb']} MB",
            flush=True,
        )
        models[name] = model.to(device)
    result["parameters"]["mismatches"] = mismatches
    save()

    plan = []
    for name in models:
        for fmt in _split(args.memory_formats):
            plan += [(name, "train", d, fmt) for d in _split(args.train_dtypes)]
            plan += [(name, "inference", d, fmt) for d in _split(args.infer_dtypes)]
    for name, kind, dtype_name, fmt in plan:
        record = {"model": name, "kind": kind, "autocast": dtype_name, "memory_format": fmt}
        elapsed = time.perf_counter() - started
        if args.budget_s is not None and elapsed > args.budget_s:
            record["skipped"] = f"budget spent ({elapsed:.0f} s)"
        else:
            measure = measure_train if kind == "train" else measure_inference
            extra = () if kind == "train" else (name,)
            try:
                record.update(
                    measure(
                        models[name],
                        device,
                        DTYPES[dtype_name],
                        fmt == "channels_last",
                        args,
                        *extra,
                    )
                )
            except Exception as error:  # noqa: BLE001 - report it and go on with the next one
                record["error"] = f"{type(error).__name__}: {error}"
        record["elapsed_s"] = time.perf_counter() - started
        result["runs"].append(record)
        save()
        print(json.dumps(record), flush=True)
    if device.type == "cuda":
        result["machine"]["max_memory_allocated_gib"] = torch.cuda.max_memory_allocated() / 2**30
    save()
    failed = mismatches or any("error" in r for r in result["runs"])
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
