#!/usr/bin/env bash
# How the bundled tiny weights are made, end to end, on this project's 2-core CPU machine (Design v2:
# the model takes the flow prior of its keyframe and predicts a correction; see docs/MODELS.md).
# The held-out people of the registry (streamingeffect/data/people.json) stay out of every build.
set -euo pipefail
cd "$(dirname "$0")/.."
SE=".venv/bin/python -m streamingeffect.cli"
export OMP_NUM_THREADS=1  # one core for training, the other for the machine (2 threads spin-wait on a busy CPU)

# The person-diverse corpus: 25 people, photos as pseudo-video (9:1 with clips), long references.
$SE data build --out runs/data/corpus-train --samples 2000 --frames 16 --size 256 --workers 2

# The autoencoder is the first wave's (streamingeffect/weights/autoencoder-tiny; its recipe is in git
# history). The teacher starts from the first wave's teacher where its weights fit: the new inputs (the
# prior's latent and confidence) start at zero and its x0 head at zero, so it starts as flow propagation.
# Latents (with both references' flow priors) are encoded once, in two processes.
# (The committed teacher: 910 steps on a first encoding whose prior was weighted by its confidence,
# then 1470 steps on this one, 70 min in all; weighting cost 6 dB, see pipeline/flow_prior.py.)
mkdir -p runs/teacher-wave1
for name in model.safetensors config.json; do
  git show "61e2caa:streamingeffect/weights/teacher-tiny/$name" > "runs/teacher-wave1/$name"
done
$SE train teacher --config tiny --prior --init runs/teacher-wave1 --far-reference 0.5 \
  --data runs/data/corpus-train --autoencoder streamingeffect/weights/autoencoder-tiny --out runs/teacher-prior \
  --resolution 128 --frames 4 --steps 100000 --batch-size 8 --lr 3e-4 --save-every 100 --time-limit 70

# Causal student: ODE pairs from the teacher (24 Euler steps through the 4 student times), ODE init,
# then DMD with Self-Forcing rollouts.
$SE train ode-init --teacher runs/teacher-prior --data runs/data/corpus-train --out runs/student-ode \
  --pairs 256 --teacher-steps 24 --student-steps 4 --chunk-frames 1 --window-chunks 3 --far-reference 0.5 \
  --steps 100000 --batch-size 8 --lr 2e-4 --save-every 50 --time-limit 15
$SE train student --teacher runs/teacher-prior --data runs/student-ode --out runs/student-dmd \
  --steps 100000 --batch-size 4 --lr 5e-5 --critic-lr 1e-4 --critic-steps 3 --regression-weight 1.0 \
  --save-every 25 --time-limit 12
.venv/bin/python -c "
from pathlib import Path
from streamingeffect.train.run import export_weights
export_weights(Path('runs/teacher-prior'), Path('streamingeffect/weights/teacher-tiny'), half=True, autoencoder='../autoencoder-tiny')
export_weights(Path('runs/student-dmd'), Path('streamingeffect/weights/student-tiny'), half=True, autoencoder='../autoencoder-tiny')
"
# The live worker's autoencoder: nano, distilled into autoencoder-tiny's latent space (its encoder
# matches tiny's latents, its decoder tiny's pictures of them and their differences), so the models
# above run on it unchanged; ~20 ms less per model refresh at 128 px.
$SE train autoencoder --config nano --distill-from streamingeffect/weights/autoencoder-tiny \
  --data runs/data/corpus-train --out runs/ae-nano --steps 5000 --batch-size 8 --lr 1e-3 --save-every 200 \
  --time-limit 45
.venv/bin/python -c "
from pathlib import Path
from streamingeffect.train.run import export_weights
export_weights(Path('runs/ae-nano'), Path('streamingeffect/weights/autoencoder-nano'))
"
$SE bench sampling
$SE bench --suite quick --out docs/benchmark-quick
