"""The same recipe in edgejax and in timm (PyTorch) on CIFAR-10: prints both top-1s per seed.

    python benchmarks/parity_cifar.py                                # defaults below
    python benchmarks/parity_cifar.py --model repvgg_a0 --size 32 --epochs 10 --seeds 0,1 \
        --train-per-class 5000 --torch-python PYTHON_WITH_TORCH

Data: ``../shared/data/cifar10/{train,test}/<class>/*.jpg`` (ImageFolder). A subset of
``--train-per-class`` / ``--test-per-class`` images (the first ones in sorted order) is linked into
a temporary ImageFolder that both frameworks read.

Recipe (identical on both sides): the model from scratch with 10 classes; RandomResizedCrop
(scale 0.35-1) + horizontal flip at ``--size`` px, ImageNet mean/std; SGD Nesterov momentum 0.9,
lr ``--lr`` (no batch scaling), weight decay 5e-5 off biases and norms, linear warmup 1 epoch then
cosine per step to 0; batch ``--batch``; evaluation: resize to ``--size`` (crop_pct 1). The
timm side is a plain PyTorch loop over ``timm.create_model`` (timm's own train.py adds much more).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CIFAR = REPO.parent / "shared" / "data" / "cifar10"

TORCH_SCRIPT = r"""
import json, math, sys, time
import numpy as np, torch, timm
from PIL import Image
from torchvision import datasets, transforms
a = json.loads(sys.argv[1])
torch.manual_seed(a["seed"]); np.random.seed(a["seed"])
torch.set_num_threads(a["threads"])
mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
tr = transforms.Compose([transforms.RandomResizedCrop(a["size"], scale=(0.35, 1.0),
                         interpolation=transforms.InterpolationMode.BILINEAR),
                         transforms.RandomHorizontalFlip(), transforms.ToTensor(),
                         transforms.Normalize(mean, std)])
te = transforms.Compose([transforms.Resize(a["size"]), transforms.CenterCrop(a["size"]),
                         transforms.ToTensor(), transforms.Normalize(mean, std)])
train = datasets.ImageFolder(a["root"] + "/train", tr)
test = datasets.ImageFolder(a["root"] + "/test", te)
g = torch.Generator(); g.manual_seed(a["seed"])
dl = torch.utils.data.DataLoader(train, batch_size=a["batch"], shuffle=True, drop_last=True,
                                 num_workers=0, generator=g)
tl = torch.utils.data.DataLoader(test, batch_size=256, num_workers=0)
model = timm.create_model(a["model"], num_classes=10)
decay = [p for n, p in model.named_parameters() if p.ndim > 1]
no_decay = [p for n, p in model.named_parameters() if p.ndim <= 1]
opt = torch.optim.SGD([{"params": decay, "weight_decay": 5e-5},
                       {"params": no_decay, "weight_decay": 0.0}], lr=a["lr"], momentum=0.9,
                      nesterov=True)
spe = len(dl); total = spe * a["epochs"]; warm = spe
def lr_at(t):
    if t < warm: return a["lr"] * t / warm
    return 0.5 * a["lr"] * (1 + math.cos(math.pi * (t - warm) / max(total - warm, 1)))
t0 = time.time(); step = 0
for epoch in range(a["epochs"]):
    model.train()
    for x, y in dl:
        for grp in opt.param_groups: grp["lr"] = lr_at(step)
        loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad(); loss.backward(); opt.step(); step += 1
model.eval(); correct = n = 0
with torch.no_grad():
    for x, y in tl:
        correct += (model(x).argmax(1) == y).sum().item(); n += len(y)
print(json.dumps({"top1": 100.0 * correct / n, "time_s": time.time() - t0, "steps": step}))
"""


def make_subset(train_per_class: int, test_per_class: int) -> str:
    root = Path(tempfile.mkdtemp(prefix="cifar_subset_"))
    for split, k in (("train", train_per_class), ("test", test_per_class)):
        for cls in sorted(os.listdir(CIFAR / split)):
            (root / split / cls).mkdir(parents=True)
            for f in sorted(os.listdir(CIFAR / split / cls))[:k]:
                os.symlink(CIFAR / split / cls / f, root / split / cls / f)
    return str(root)


def run_edgejax(args, root: str, seed: int) -> dict:
    import jax

    jax.config.update(
        "jax_compilation_cache_dir", os.path.join(tempfile.gettempdir(), "edgejax_parity_xla")
    )
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
    from edgejax.train import base_config, run

    c = base_config()
    c.seed = seed
    c.model.name = args.model
    c.data.dataset = root
    c.data.train_split, c.data.eval_split = "train", "test"
    c.data.image_size = args.size
    c.data.crop_pct = 1.0
    c.data.scale = (0.35, 1.0)
    c.data.interpolation = "bilinear"
    c.data.mean, c.data.std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    c.global_batch_size = args.batch
    c.num_epochs = float(args.epochs)
    c.optimizer.name = "sgd"
    c.optimizer.lr = args.lr
    c.optimizer.lr_scaling = "none"
    c.optimizer.nesterov = True
    c.optimizer.weight_decay = 5e-5
    c.schedule.warmup_epochs = 1.0
    c.eval.every_epochs = 0.0
    c.log.progress = False
    c.log.tensorboard = False
    with tempfile.TemporaryDirectory() as w:
        s = run(c, w)
    return {"top1": s["last_eval"]["top1"], "time_s": s["time_s"], "steps": s["step"]}


def run_timm(args, root: str, seed: int) -> dict:
    a = dict(
        root=root,
        seed=seed,
        model=args.model,
        size=args.size,
        batch=args.batch,
        epochs=args.epochs,
        lr=args.lr,
        threads=args.torch_threads,
    )
    p = subprocess.run(
        [args.torch_python, "-c", TORCH_SCRIPT, json.dumps(a)], capture_output=True, text=True
    )
    if p.returncode != 0:
        raise RuntimeError(p.stderr[-3000:])
    return json.loads(p.stdout.strip().splitlines()[-1])


def main():
    sys.path.insert(0, str(REPO))
    from edgejax.bench import add_torch_python_flag

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--model", default="mobilenetv3_small_050")
    p.add_argument("--resolution", "--size", dest="size", type=int, default=32)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--lr", type=float, default=0.05)
    p.add_argument("--seeds", default="0,1")
    p.add_argument("--train-per-class", type=int, default=500)
    p.add_argument("--test-per-class", type=int, default=200)
    add_torch_python_flag(p)
    p.add_argument("--torch-threads", type=int, default=2)
    p.add_argument("--only", choices=("both", "edgejax", "timm"), default="both")
    args = p.parse_args()
    if not CIFAR.is_dir():
        sys.exit(f"CIFAR-10 not found at {CIFAR}")
    root = make_subset(args.train_per_class, args.test_per_class)
    print(
        f"# {args.model} @{args.size}px, {args.epochs} epochs, batch {args.batch}, lr {args.lr}, "
        f"{args.train_per_class * 10} train / {args.test_per_class * 10} test images",
        flush=True,
    )
    rows = []
    for seed in (int(s) for s in args.seeds.split(",")):
        for side, fn in (("edgejax", run_edgejax), ("timm", run_timm)):
            if args.only not in ("both", side):
                continue
            r = fn(args, root, seed)
            rows.append((side, seed, r))
            print(f"# {side} seed {seed}: top-1 {r['top1']:.2f} ({r['time_s']:.0f}s)", flush=True)
    print("\n| framework | seed | top-1 | train time (s) | steps |\n|---|---|---|---|---|")
    for side, seed, r in rows:
        print(f"| {side} | {seed} | {r['top1']:.2f} | {r['time_s']:.0f} | {r['steps']} |")
    for side in ("edgejax", "timm"):
        vals = [r["top1"] for s, _, r in rows if s == side]
        if vals:
            print(f"{side}: mean top-1 {sum(vals) / len(vals):.2f} over {len(vals)} seeds")


if __name__ == "__main__":
    main()
