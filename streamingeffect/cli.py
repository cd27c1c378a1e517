"""The `streamingeffect` command: parses arguments and calls library code, nothing more."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from pathlib import Path

IMAGE_RATIO_DEFAULT = 9.0  # keep equal to streamingeffect.data.build.IMAGE_RATIO (not imported: slow)
DEFAULT_CACHE = Path(os.environ.get("STREAMINGEFFECT_CACHE", Path.home() / ".cache" / "streamingeffect"))


def _effects_list(args: argparse.Namespace) -> None:
    from streamingeffect.effects import catalog

    categories = [c for c in catalog() if args.kind in (None, c.kind)]
    if args.json:
        fields = ("id", "family", "kind", "op", "region", "descriptions")
        print(json.dumps([{k: c.to_json()[k] for k in fields} for c in categories], indent=1))
        return
    for c in categories:
        print(f"{c.id:40s} {c.kind + ('/' + c.op if c.op else ''):14s} {c.region:11s} {c.descriptions[0]}")
    print(f"{len(categories)} categories", file=sys.stderr)


def _effects_render(args: argparse.Namespace) -> None:
    from streamingeffect.data.render import render_video
    from streamingeffect.effects import get_category

    category = get_category(args.effect)
    with _output_file(args.output, args.input) as output:
        written = render_video(
            Path(args.input), category, output, args.seed, args.max_frames, DEFAULT_CACHE / "parse"
        )
    print(f"wrote {written} frames of {category.id} to {args.output}")


def _data_build(args: argparse.Namespace) -> None:
    from streamingeffect.data.build import BuildConfig, build_dataset

    config = BuildConfig(
        sources=args.sources,
        split=args.split,
        image_ratio=args.image_ratio,
        augment=not args.no_augment,
        out=Path(args.out),
        samples=args.samples,
        frames=args.frames,
        size=args.size,
        seed=args.seed,
        shard_size=args.shard_size,
        crf=args.crf,
        categories=tuple(args.categories.split(",")) if args.categories else (),
        parse_cache=Path(args.parse_cache) if args.parse_cache else None,
    )
    report = build_dataset(config, engine=args.engine, workers=args.workers)
    counts = report.manifest["counts"]
    print(
        f"{report.samples} samples ({', '.join(f'{k} {v}' for k, v in counts['per_kind'].items())}), "
        f"{len(counts['per_category'])} categories, {counts['skipped']} skipped; "
        f"{report.shards_built} shards built, {report.shards_reused} reused; "
        f"{report.seconds:.1f} s ({report.samples / report.seconds:.2f} samples/s)"
        f" -> {config.out / 'manifest.json'}"
    )
    for source in report.manifest["sources"]:
        if source["status"] != "used":
            print(f"  skipped source {source['path']}: {source['reason']}")


def _data_preview(args: argparse.Namespace) -> None:
    from streamingeffect.data.preview import write_preview

    sheet, gallery = write_preview(
        Path(args.dir), Path(args.out), limit=args.limit, columns=args.columns, by=args.by
    )
    print(f"contact sheet: {sheet}\ngallery: {gallery}")


def _data_people(args: argparse.Namespace) -> None:
    from streamingeffect.data.people import load_registry, registry_table

    table = registry_table(load_registry())
    if args.json:
        print(json.dumps(table, indent=1))
        return
    for person in table:
        files = ", ".join(f["id"] for f in person["files"])
        print(f"{person['id']:28s} {person['split']:5s} {files}")
    splits = {s: sum(p["split"] == s for p in table) for s in ("train", "test")}
    print(f"{len(table)} people: {splits['train']} train, {splits['test']} held out (test)", file=sys.stderr)


def _data_bench(args: argparse.Namespace) -> None:
    from streamingeffect.data.benchmark import run_build_benchmark

    run_build_benchmark(
        engines=args.engines.split(","),
        samples=args.samples,
        frames=args.frames,
        size=args.size,
        workers=args.workers,
        work_dir=Path(args.work_dir),
        report=Path(args.report) if args.report else None,
        command=" ".join(["streamingeffect", *sys.argv[1:]]),
    )


def _train(args: argparse.Namespace) -> None:
    from streamingeffect.train.run import distill_autoencoder, train_autoencoder, train_teacher
    from streamingeffect.train.trainer import TrainConfig

    if args.model == "effect-classifier":
        from streamingeffect.eval.effect_classifier import train_effect_classifier

        out = train_effect_classifier(Path(args.data), Path(args.out), steps=args.steps)
        print(f"checkpoint: {out}")
        return
    config = TrainConfig(
        steps=args.steps,
        batch_size=args.batch_size,
        lr=args.lr,
        save_every=args.save_every,
        precision=args.precision,
        seed=args.seed,
        fsdp=args.fsdp,
        time_limit=args.time_limit * 60,
        workers=args.workers,
    )
    if args.model in ("ode-init", "student"):
        out = _train_student(args, config)
    elif args.model == "autoencoder" and args.distill_from:
        teacher = Path(args.distill_from)
        out = distill_autoencoder(Path(args.data), Path(args.out), args.config, config, teacher, args.resume)
    elif args.model == "autoencoder":
        out = train_autoencoder(Path(args.data), Path(args.out), args.config, config, resume=args.resume)
    else:
        out = train_teacher(
            Path(args.data),
            Path(args.out),
            args.config,
            config,
            autoencoder_dir=Path(args.autoencoder),
            resolution=args.resolution,
            frames=args.frames,
            layout=args.layout,
            resume=args.resume,
            prior=args.prior,
            init=Path(args.init) if args.init else None,
            far_reference=args.far_reference,
        )
    print(f"checkpoint: {out}")


def _train_student(args: argparse.Namespace, config: object) -> Path:
    from streamingeffect.diffusion.sampler import Guidance
    from streamingeffect.pipeline import resolve_model
    from streamingeffect.train.distill import train_ode_init, train_student

    if not args.teacher:
        raise ValueError(f"train {args.model} needs --teacher DIR (the teacher checkpoint to distill)")
    guidance = Guidance(text=args.guidance, reference=args.guidance)
    if args.model == "ode-init":
        return train_ode_init(
            resolve_model(args.teacher),
            Path(args.data),
            Path(args.out),
            config,
            pairs=args.pairs,
            teacher_steps=args.teacher_steps,
            student_steps=args.student_steps,
            chunk_frames=args.chunk_frames,
            window_chunks=args.window_chunks,
            guidance=guidance,
            resume=args.resume,
            far_reference=args.far_reference,
        )
    return train_student(
        resolve_model(args.teacher),
        Path(args.data),
        Path(args.out),
        config,
        critic_steps=args.critic_steps,
        critic_lr=args.critic_lr,
        regression_weight=args.regression_weight,
        guidance=guidance,
        self_forcing=not args.teacher_forcing,
        resume=args.resume,
    )


def _generate(args: argparse.Namespace) -> None:
    from streamingeffect.diffusion.sampler import Guidance
    from streamingeffect.io import load_image
    from streamingeffect.pipeline import EffectRequest, ModelBundle, Sampling
    from streamingeffect.runtime.offline import generate_video

    effect = args.prompt if args.prompt is not None else args.effect
    if effect is None and args.reference is None:
        raise ValueError("give --effect ID, --prompt TEXT or --reference EDITED_FRAME")
    if effect is not None:
        EffectRequest.parse(effect, match_catalog=False)  # validate before loading anything heavy
    bundle = ModelBundle.load(args.model)
    sampling = Sampling(args.steps, args.start) if args.steps else bundle.default_sampling()
    if bundle.is_student:
        bundle.times(sampling)  # a clear error for more steps than the student was distilled for
    with _output_file(args.output, args.input, args.reference, args.reference_source) as output:
        written = generate_video(
            Path(args.input),
            output,
            bundle,
            effect,
            reference=load_image(args.reference) if args.reference else None,
            reference_source=load_image(args.reference_source) if args.reference_source else None,
            sampling=sampling,
            guidance=Guidance(text=args.guidance_text, reference=args.guidance_reference),
            seed=args.seed,
            max_frames=args.max_frames,
        )
    print(f"wrote {written} frames to {args.output}")


def _add_report(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--report", default="docs/BENCHMARKS.md", help="markdown file to update ('' to skip)")


def _bench_models(args: argparse.Namespace) -> None:
    from streamingeffect.eval.model_bench import run_model_benchmark

    run_model_benchmark(
        autoencoder_dir=Path(args.autoencoder),
        teacher_dir=Path(args.teacher) if args.teacher else None,
        heldout_clip=Path(args.heldout_clip),
        heldout_data=Path(args.heldout_data) if args.heldout_data else None,
        steps=args.steps,
        limit=args.limit,
        report=Path(args.report) if args.report else None,
        command=" ".join(["streamingeffect", *sys.argv[1:]]),
    )


def _bench_autoencoders(args: argparse.Namespace) -> None:
    from streamingeffect.eval.distilled_ae import run_distilled_benchmark
    from streamingeffect.pipeline.bundle import BUNDLED, DISTILLED_AUTOENCODER

    run_distilled_benchmark(
        student_dir=Path(args.autoencoder) if args.autoencoder else DISTILLED_AUTOENCODER,
        teacher_dir=Path(args.teacher) if args.teacher else BUNDLED / "autoencoder-tiny",
        frames=args.frames,
        report=Path(args.report) if args.report else None,
        command=" ".join(["streamingeffect", *sys.argv[1:]]),
    )


def _bench_suite(args: argparse.Namespace) -> None:
    if args.suite is None:
        raise ValueError("choose a benchmark: `bench --suite quick|full` or `bench models|distill|stream`")
    from streamingeffect.eval.suite import run_suite

    out = Path(args.out or f"bench-{args.suite}")
    command = " ".join(["streamingeffect", *sys.argv[1:]])
    run_suite(args.suite, out, args.teacher or None, args.student, command)
    print(f"report: {out / 'report.md'}")


def _command_line() -> str:
    """The command as typed, for the benchmark reports."""
    return " ".join(["streamingeffect", *sys.argv[1:]])


def _bench_ceiling(args: argparse.Namespace) -> None:
    from streamingeffect.eval.ceiling import run_ceiling_benchmark

    run_ceiling_benchmark(
        frames=args.frames,
        report=Path(args.report) if args.report else None,
        command=_command_line(),
    )


def _bench_leaves(args: argparse.Namespace) -> None:
    from streamingeffect.eval.leaves import run_leaves_benchmark

    run_leaves_benchmark(
        args.effect,
        args.model,
        report=Path(args.report) if args.report else None,
        picture=Path(args.picture) if args.picture else None,
        command=_command_line(),
    )


def _bench_painted(args: argparse.Namespace) -> None:
    from streamingeffect.eval.painted import run_painted_benchmark

    run_painted_benchmark(
        args.model,
        args.frames,
        picture=Path(args.picture),
        report=Path(args.report) if args.report else None,
        command=_command_line(),
    )


def _print_and_report(text: str, report: str, section: str) -> None:
    """A benchmark's markdown table: printed, and written to ``report``'s section unless it is ''."""
    from streamingeffect.docs import replace_section

    print(text)
    if report:
        replace_section(Path(report), section, text)


def _bench_prompts(args: argparse.Namespace) -> None:
    from streamingeffect.pipeline.catalog_match import match_table

    _print_and_report(match_table(), args.report, "prompts")


def _bench_sampling(args: argparse.Namespace) -> None:
    from streamingeffect.eval.suite import run_sampling_benchmark

    run_sampling_benchmark(
        args.teacher or None,
        args.student,
        frames=args.frames,
        report=Path(args.report) if args.report else None,
        command=_command_line(),
    )


def _bench_drift(args: argparse.Namespace) -> None:
    from streamingeffect.eval.suite import drift_table

    _print_and_report(drift_table(args.seconds, args.model, _command_line()), args.report, "drift")


def _bench_stream(args: argparse.Namespace) -> None:
    from streamingeffect.eval.stream_bench import run_scaling_benchmark, run_stream_benchmark

    if args.table == "scaling":
        run_scaling_benchmark(
            model=args.model,
            effect=args.effect,
            seconds=args.seconds,
            report=Path(args.report) if args.report else None,
            command=" ".join(["streamingeffect", *sys.argv[1:]]),
            repeats=args.repeats,
        )
        return
    run_stream_benchmark(
        model=args.model,
        source=args.input,
        effect=args.effect,
        size=args.size,
        frames=args.frames,
        report=Path(args.report) if args.report else None,
        strip=Path(args.strip) if args.strip else None,
        command=" ".join(["streamingeffect", *sys.argv[1:]]),
        keyframe=args.keyframe,
        repeats=args.repeats,
    )


def _bench_rates(args: argparse.Namespace) -> None:
    from streamingeffect.eval.suite import SUITES, rate_table

    text = rate_table(SUITES[args.suite], args.student, _command_line())
    _print_and_report(text, args.report, "stream-rates")


def _bench_distill(args: argparse.Namespace) -> None:
    from streamingeffect.eval.distill_bench import run_distill_benchmark
    from streamingeffect.pipeline import resolve_model

    def steps(text: str) -> list[int]:
        return [int(s) for s in text.split(",") if s]

    students = []
    if args.ode_init:
        students.append(("student after ODE init", Path(args.ode_init), steps(args.ode_init_steps)))
    if args.student:
        students.append(("student after DMD", resolve_model(args.student), steps(args.student_steps)))
    run_distill_benchmark(
        teacher_dir=resolve_model(args.teacher),
        students=students,
        heldout_data=Path(args.heldout_data),
        limit=args.limit,
        frames=args.frames,
        teacher_steps=tuple(steps(args.teacher_steps)),
        stream_frames=args.stream_frames,
        report=Path(args.report) if args.report else None,
        command=" ".join(["streamingeffect", *sys.argv[1:]]),
    )


def _size(text: str) -> tuple[int, int]:
    try:
        width, height = (int(v) for v in text.lower().split("x"))
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"size must look like 256x256, got {text!r}") from error
    if width < 16 or height < 16:
        raise argparse.ArgumentTypeError(f"size {text} is too small (16x16 at least)")
    return width, height


def _output_file(output: str, *inputs: str | None) -> AbstractContextManager[Path]:
    """A temporary path renamed to ``output`` when the command succeeds; refuses an input as output."""
    from streamingeffect.io.outputs import atomic_output

    return atomic_output(Path(output), [Path(i) for i in inputs if i])


def _run(args: argparse.Namespace) -> None:
    from streamingeffect.io.live import PushSettings
    from streamingeffect.runtime.runner import RunConfig, run, split_outputs

    output, live_outputs = split_outputs(args.output or [])
    summary = run(
        RunConfig(
            input=args.input,
            effect=args.effect,
            prompt=args.prompt,
            keyframe=Path(args.keyframe) if args.keyframe else None,
            keyframe_source=Path(args.keyframe_source) if args.keyframe_source else None,
            output=output,
            live_outputs=live_outputs,
            virtualcam_backend=args.virtualcam_backend,
            push=PushSettings(bitrate_kbps=args.bitrate),
            control_port=args.control_port,
            engine=args.engine,
            preview_port=args.preview_port,
            raw_stdout=args.raw_stdout,
            size=args.size,
            steps=args.steps,
            model=args.model,
            realtime=args.realtime,
            max_frames=args.max_frames,
            mask_cache=not args.no_mask_cache,
            stats_json=Path(args.stats_json) if args.stats_json else None,
            rate=args.rate,
        )
    )
    if summary["interrupted"]:  # the output is finished; the exit status still says Ctrl-C
        raise KeyboardInterrupt


def _ctl(args: argparse.Namespace) -> None:
    from streamingeffect.runtime.control import ControlClient

    client = ControlClient(args.port)
    if args.action == "set-effect":
        result = client.set_effect(args.effect)
    elif args.action == "set-prompt":
        result = client.set_prompt(args.prompt)
    elif args.action == "set-keyframe":
        result = client.set_keyframe(Path(args.image), Path(args.source) if args.source else None)
    elif args.action == "clear":
        result = client.clear_keyframe()
    elif args.action == "frame":
        result = {"frame": str(client.save_frame(Path(args.out)))}
    else:
        result = client.stats()
    print(json.dumps(result, indent=2))


def _serve(args: argparse.Namespace) -> None:
    from streamingeffect.studio.server import serve
    from streamingeffect.studio.session import StudioConfig

    local = args.host in ("127.0.0.1", "localhost", "::1")
    config = StudioConfig(
        model=args.model,
        max_sessions=args.max_sessions,
        idle_timeout_s=args.idle_timeout,
        steps=args.steps,
        ice=args.ice if args.ice != "auto" else ("loopback" if local else "all"),
        recordings_dir=Path(args.recordings) if args.recordings else None,
        token=args.token,
        rate=args.rate,
    )
    serve(
        config,
        host=args.host,
        port=args.port,
        allow_hosts=args.allow_host,
        ssl_certfile=args.ssl_certfile,
        ssl_keyfile=args.ssl_keyfile,
    )


def _add_serve_security(studio: argparse.ArgumentParser) -> None:
    """Access token, accepted host names and TLS for `serve` (docs/SECURITY.md)."""
    studio.add_argument(
        "--token", default=None, help="access token (default: a random one when --host is not loopback)"
    )
    studio.add_argument(
        "--allow-host",
        action="append",
        default=[],
        metavar="NAME",
        help="also answer to this Host name, e.g. the public name behind a TLS proxy (repeatable)",
    )
    studio.add_argument("--ssl-certfile", default=None, help="serve https with this certificate (PEM)")
    studio.add_argument("--ssl-keyfile", default=None, help="the certificate's private key (PEM)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="streamingeffect", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    commands = parser.add_subparsers(dest="command", required=True)

    effects = commands.add_parser("effects", help="the effect catalog and its ground-truth renderer")
    effects_cmds = effects.add_subparsers(dest="action", required=True)
    listing = effects_cmds.add_parser("list", help="list effect categories")
    listing.add_argument("--json", action="store_true", help="print a JSON array")
    listing.add_argument("--kind", choices=["effect", "edit"])
    listing.set_defaults(run=_effects_list)
    render = effects_cmds.add_parser("render", help="render a category's ground truth on a clip")
    render.add_argument("--input", required=True, help="video file or image folder")
    render.add_argument("--effect", required=True, help="category id (see `effects list`)")
    render.add_argument("--output", required=True, help="output .mp4")
    render.add_argument("--seed", type=int, default=0)
    render.add_argument("--max-frames", type=int, default=None)
    render.set_defaults(run=_effects_render)

    data = commands.add_parser("data", help="build, inspect and benchmark training data")
    data_cmds = data.add_subparsers(dest="action", required=True)
    build = data_cmds.add_parser("build", help="build effect/edit triplets from human videos")
    build.add_argument(
        "--sources",
        default="corpus",
        help="'corpus' (the person registry, see `data people`), 'bundled' or a video file / folder",
    )
    build.add_argument(
        "--split",
        choices=["train", "test"],
        default="train",
        help="test: the held-out people (benchmark sets)",
    )
    build.add_argument(
        "--image-ratio", type=float, default=IMAGE_RATIO_DEFAULT, help="photo samples per clip sample"
    )
    build.add_argument("--no-augment", action="store_true", help="no backgrounds, colour jitter or clip zoom")
    build.add_argument("--out", required=True, help="output folder (manifest.json, shards/, cache/)")
    build.add_argument("--samples", type=int, default=64)
    build.add_argument("--frames", type=int, default=16)
    build.add_argument("--size", type=int, default=256)
    build.add_argument("--seed", type=int, default=0)
    build.add_argument("--engine", choices=["local", "ray"], default="local")
    build.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    build.add_argument("--shard-size", type=int, default=8, help="samples per tar shard")
    build.add_argument("--crf", type=int, default=12, help="H.264 quality of stored clips (0 = lossless)")
    build.add_argument("--categories", default="", help="comma-separated category ids (default: all)")
    build.add_argument(
        "--parse-cache", default="", help="folder for cached clip parses (default: OUT/cache/parse)"
    )
    build.set_defaults(run=_data_build)
    preview = data_cmds.add_parser("preview", help="contact sheet PNG + HTML gallery of a dataset")
    preview.add_argument("dir")
    preview.add_argument("--out", required=True, help="contact sheet .png (the gallery goes beside it)")
    preview.add_argument("--limit", type=int, default=48, help="people or categories to show")
    preview.add_argument("--columns", type=int, default=4)
    preview.add_argument(
        "--by",
        choices=["auto", "person", "category"],
        default="auto",
        help="one row per person (auto: when the manifest lists people) or one cell per category",
    )
    preview.set_defaults(run=_data_preview)
    people = data_cmds.add_parser("people", help="the person registry: ids, splits, files and licences")
    people.add_argument("--json", action="store_true", help="one JSON entry per person")
    people.set_defaults(run=_data_people)
    bench = data_cmds.add_parser("bench", help="measure build throughput and record it in docs/BENCHMARKS.md")
    bench.add_argument("--engines", default="local,ray")
    bench.add_argument("--samples", type=int, default=32)
    bench.add_argument("--frames", type=int, default=16)
    bench.add_argument("--size", type=int, default=256)
    bench.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    bench.add_argument("--work-dir", default="runs/bench-data")
    _add_report(bench)
    bench.set_defaults(run=_data_bench)
    train = commands.add_parser("train", help="train a model (alone, or under torchrun for DDP/FSDP)")
    train.add_argument(
        "model", choices=["autoencoder", "teacher", "ode-init", "student", "effect-classifier"]
    )
    train.add_argument("--config", default="tiny", help="named size (tiny, small, base, ...)")
    train.add_argument(
        "--data",
        required=True,
        help="dataset folder from `data build` (student: the `train ode-init` folder)",
    )
    train.add_argument("--out", required=True, help="checkpoint folder")
    train.add_argument("--steps", type=int, default=2000)
    train.add_argument("--batch-size", type=int, default=16)
    train.add_argument("--lr", type=float, default=3e-4)
    train.add_argument("--save-every", type=int, default=200)
    train.add_argument("--precision", choices=["auto", "bf16", "fp32"], default="auto")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--fsdp", action="store_true", help="shard with FSDP instead of DDP (large configs)")
    train.add_argument("--time-limit", type=float, default=0, help="minutes; save and stop when reached")
    train.add_argument("--workers", type=int, default=1, help="data loader processes")
    train.add_argument("--resume", action="store_true", help="continue from the checkpoint in --out")
    train.add_argument("--autoencoder", default="", help="autoencoder checkpoint (teacher: encodes the data)")
    train.add_argument(
        "--distill-from",
        default="",
        help="autoencoder: a trained autoencoder whose latent space the new (smaller) one learns",
    )
    train.add_argument(
        "--resolution", type=int, default=128, help="teacher: frame size the latents are made at"
    )
    train.add_argument("--frames", type=int, default=4, help="teacher: latent frames per training clip")
    train.add_argument("--layout", choices=["packed", "separate"], default=None, help="teacher token layout")
    train.add_argument(
        "--prior", action="store_true", help="teacher: take the flow prior and predict its correction (x0)"
    )
    train.add_argument(
        "--init", default="", help="teacher: start from this effect model's weights where they fit"
    )
    train.add_argument(
        "--far-reference",
        type=float,
        default=0.0,
        help="teacher, ode-init: share of samples guided by their long reference",
    )
    distill = train.add_argument_group("distillation (ode-init, student)")
    distill.add_argument("--teacher", default="", help="teacher checkpoint folder (or the bundled one)")
    distill.add_argument("--pairs", type=int, default=512, help="ode-init: teacher ODE trajectories to make")
    distill.add_argument("--teacher-steps", type=int, default=48, help="ode-init: teacher Euler steps")
    distill.add_argument(
        "--student-steps", type=int, default=4, help="ode-init: the student's sampling steps"
    )
    distill.add_argument("--chunk-frames", type=int, default=1, help="ode-init: latent frames per chunk")
    distill.add_argument("--window-chunks", type=int, default=3, help="ode-init: chunks kept in the KV cache")
    distill.add_argument("--guidance", type=float, default=1.0, help="teacher guidance (real score / pairs)")
    distill.add_argument("--critic-steps", type=int, default=5, help="student: critic updates per step")
    distill.add_argument("--critic-lr", type=float, default=1e-4)
    distill.add_argument("--regression-weight", type=float, default=1.0, help="student: DMD's L_reg on pairs")
    distill.add_argument(
        "--teacher-forcing",
        action="store_true",
        help="student: the teacher's clean latents in the KV cache instead of Self-Forcing rollouts",
    )
    train.set_defaults(run=_train)
    bench = commands.add_parser(
        "bench",
        help="benchmarks that print measured figures",
        description="`bench --suite quick|full --out DIR`: the whole evaluation (report.md, results.json, "
        "plots, contact sheet); or one of the focused benchmarks below.",
    )
    bench.add_argument("--suite", choices=["quick", "full"], help="the evaluation suite to run")
    bench.add_argument("--out", default="", help="folder for the suite's report (default: bench-SUITE)")
    bench.add_argument("--teacher", default="teacher", help="teacher for the suite ('' to skip it)")
    bench.add_argument("--student", default="student", help="student for the suite")
    bench.set_defaults(run=_bench_suite)
    bench_cmds = bench.add_subparsers(dest="bench_command", required=False)
    models = bench_cmds.add_parser(
        "models", help="autoencoder and teacher quality and speed on held-out data"
    )
    models.add_argument("--autoencoder", required=True)
    models.add_argument("--teacher", default="")
    models.add_argument("--heldout-clip", required=True, help="a clip no model trained on")
    models.add_argument("--heldout-data", default="", help="a dataset built from held-out clips")
    models.add_argument("--steps", type=int, default=50)
    models.add_argument("--limit", type=int, default=16, help="held-out samples to score")
    _add_report(models)
    models.set_defaults(run=_bench_models)
    autoencoders = bench_cmds.add_parser(
        "autoencoders",
        help="a distilled autoencoder against the one whose latent space it learnt, on held-out people",
    )
    autoencoders.add_argument("--autoencoder", default="", help="the distilled one (default: bundled nano)")
    autoencoders.add_argument("--teacher", default="", help="the one it learnt from (default: bundled tiny)")
    autoencoders.add_argument("--frames", type=int, default=24, help="frames of each held-out person")
    _add_report(autoencoders)
    autoencoders.set_defaults(run=_bench_autoencoders)
    rates = bench_cmds.add_parser(
        "rates", help="the suite's sets at decoupled rates (model every k frames) against every frame"
    )
    rates.add_argument("--suite", choices=["quick", "full"], default="quick")
    rates.add_argument("--student", default="student", help="student checkpoint (default: bundled)")
    _add_report(rates)
    rates.set_defaults(run=_bench_rates)
    dist = bench_cmds.add_parser(
        "distill", help="teacher vs causal students on held-out clips: quality, speed, stream memory"
    )
    dist.add_argument("--teacher", default="teacher", help="teacher checkpoint (default: bundled)")
    dist.add_argument("--ode-init", default="", help="the student after ODE init (a `train ode-init` folder)")
    dist.add_argument("--student", default="student", help="the student after DMD (default: bundled)")
    dist.add_argument("--heldout-data", required=True, help="a built dataset of people no model trained on")
    dist.add_argument("--teacher-steps", default="50,4")
    dist.add_argument("--ode-init-steps", default="4")
    dist.add_argument("--student-steps", default="4,2,1")
    dist.add_argument("--limit", type=int, default=16, help="held-out samples")
    dist.add_argument(
        "--frames", type=int, default=8, help="frames per sample (a multiple of the teacher's window)"
    )
    dist.add_argument("--stream-frames", type=int, default=10000, help="long-stream memory test (0: skip)")
    _add_report(dist)
    dist.set_defaults(run=_bench_distill)
    ceiling = bench_cmds.add_parser(
        "ceiling",
        help="what each edit representation can reach: the renderer's target through it, full resolution",
    )
    ceiling.add_argument(
        "--frames", type=int, default=10, help="frames of the held-out clip (every second one)"
    )
    _add_report(ceiling)
    ceiling.set_defaults(run=_bench_ceiling)
    leaves = bench_cmds.add_parser("leaves", help="a person leaves the shot: nothing of them may stay")
    leaves.add_argument("--effect", default="neon_outline_cyan")
    leaves.add_argument("--model", default="default")
    leaves.add_argument("--picture", default="docs/leaves_strip.jpg", help="strip of frames ('' to skip)")
    _add_report(leaves)
    leaves.set_defaults(run=_bench_leaves)
    painted = bench_cmds.add_parser("painted", help="a painted keyframe carried through a held-out clip")
    painted.add_argument("--model", default="default")
    painted.add_argument("--frames", type=int, default=72)
    painted.add_argument("--picture", default="docs/painted_strip.jpg")
    _add_report(painted)
    painted.set_defaults(run=_bench_painted)
    prompts = bench_cmds.add_parser("prompts", help="which prompts are served as catalog effects")
    _add_report(prompts)
    prompts.set_defaults(run=_bench_prompts)
    drift = bench_cmds.add_parser("drift", help="a keyframe held for minutes: first against last minute")
    drift.add_argument("--seconds", type=float, default=300.0, help="seconds of video streamed")
    drift.add_argument("--model", default="student")
    _add_report(drift)
    drift.set_defaults(run=_bench_drift)
    sampling = bench_cmds.add_parser(
        "sampling", help="from noise or from the source, 1-50 steps: quality on the text and keyframe sets"
    )
    sampling.add_argument("--teacher", default="teacher", help="teacher ('' to skip it)")
    sampling.add_argument("--student", default="student", help="student")
    sampling.add_argument("--frames", type=int, default=8, help="frames per clip")
    _add_report(sampling)
    sampling.set_defaults(run=_bench_sampling)
    streaming = bench_cmds.add_parser(
        "stream", help="`run` end to end: the scaling table at 30 fps (360p-1080p), or the mask cache on/off"
    )
    streaming.add_argument(
        "--table",
        choices=("scaling", "mask-cache"),
        default="scaling",
        help="scaling: `run --realtime` at 360p, 540p, 720p, 1080p (decoupled rates; 720p also every frame); "
        "mask-cache: the model on every frame, mask cache on and off (--input, --size, --frames, --keyframe)",
    )
    streaming.add_argument("--seconds", type=float, default=10.0, help="scaling: seconds of video per size")
    streaming.add_argument("--model", default="default")
    streaming.add_argument("--input", default="sample", help="a clip (default: the bundled sample)")
    streaming.add_argument("--effect", default="neon_outline_cyan")
    streaming.add_argument("--size", type=_size, default=(256, 256), help="WxH the frames are processed at")
    streaming.add_argument("--frames", type=int, default=120)
    _add_report(streaming)
    streaming.add_argument(
        "--strip", default="docs/stream_strip.jpg", help="source/output strip ('' to skip)"
    )
    streaming.add_argument("--repeats", type=int, default=2, help="runs per setting, interleaved")
    streaming.add_argument(
        "--keyframe",
        action="store_true",
        help="the renderer edits the first frame and the stream propagates it (keyframe control); "
        "the report section and strip get a '-keyframe' suffix",
    )
    streaming.set_defaults(run=_bench_stream)

    live = commands.add_parser("run", help="apply an effect to live video (webcam, file, URL) in real time")
    live.add_argument(
        "--input", default="sample", help="webcam[:N], a file, an image folder, a URL, or sample"
    )
    which = live.add_mutually_exclusive_group()
    which.add_argument("--effect", help="category id (see `effects list`)")
    which.add_argument("--prompt", help="free text describing the effect")
    live.add_argument("--keyframe", help="an edited frame of this video: its edit propagates to the stream")
    live.add_argument("--keyframe-source", help="the frame the keyframe was edited from (default: the first)")
    live.add_argument(
        "--output",
        action="append",
        help="an mp4 file, virtualcam[:DEVICE] (a webcam for Zoom, Meet, OBS), or rtmp://, srt://, "
        "udp:// to push to; repeat for several (the input's sound is passed through)",
    )
    live.add_argument("--preview-port", type=int, default=None, help="serve an MJPEG preview on this port")
    live.add_argument("--raw-stdout", action="store_true", help="write raw rgb24 frames to stdout")
    live.add_argument("--size", type=_size, default=None, help="process and output at WxH (default: input)")
    live.add_argument("--steps", type=int, default=None, help="denoising steps (default: the student's own)")
    live.add_argument("--model", default="default", help="default (bundled student) or a student folder")
    live.add_argument("--realtime", action="store_true", help="pace a file like a live camera (drops frames)")
    live.add_argument("--max-frames", type=int, default=None)
    live.add_argument("--no-mask-cache", action="store_true", help="recompute every token of every frame")
    live.add_argument("--stats-json", help="write the JSON summary here too")
    live.add_argument(
        "--engine",
        choices=("model", "render"),
        default="model",
        help="model: the learned student (prompts, keyframes); render: catalog effects drawn exactly by the "
        "procedural renderer",
    )
    live.add_argument(
        "--rate",
        choices=("decoupled", "every-frame"),
        default="decoupled",
        help="decoupled: every frame answered at the input's rate, the model refreshing the edit at its own "
        "rate and flow carrying it between; every-frame: the model on every frame (drops frames when slow)",
    )
    live.add_argument(
        "--control-port", type=int, default=None, help="serve the live control API on 127.0.0.1:PORT"
    )
    live.add_argument("--bitrate", type=int, default=2500, help="video kbit/s of an rtmp/srt/udp push")
    live.add_argument("--virtualcam-backend", help="pyvirtualcam backend (default: whichever works)")
    live.set_defaults(run=_run)

    ctl = commands.add_parser("ctl", help="control a running `run --control-port` stream")
    ctl.add_argument("--port", type=int, default=7870, help="the stream's --control-port")
    ctl_cmds = ctl.add_subparsers(dest="action", required=True)
    ctl_cmds.add_parser("set-effect", help="switch to a catalog effect").add_argument("effect")
    ctl_cmds.add_parser("set-prompt", help="switch to a free prompt (--engine model)").add_argument("prompt")
    keyframe = ctl_cmds.add_parser("set-keyframe", help="an edited frame becomes the reference")
    keyframe.add_argument("image", help="the edited frame (PNG/JPEG/WebP)")
    keyframe.add_argument("--source", help="the frame it was edited from (default: the last `ctl frame`)")
    ctl_cmds.add_parser("clear", help="drop the keyframe")
    ctl_cmds.add_parser("stats", help="the stream's figures")
    ctl_cmds.add_parser("frame", help="save the latest frame to edit").add_argument("out")
    ctl.set_defaults(run=_ctl)

    studio = commands.add_parser("serve", help="the web studio: live effects on the browser's webcam")
    studio.add_argument("--host", default="127.0.0.1", help="address to bind (default: this machine only)")
    studio.add_argument("--port", type=int, default=7860)
    studio.add_argument("--model", default="default", help="default (bundled student) or a student folder")
    studio.add_argument("--max-sessions", type=int, default=2, help="browser tabs served at once")
    studio.add_argument(
        "--idle-timeout", type=float, default=60.0, help="seconds before an idle session closes"
    )
    studio.add_argument(
        "--steps", type=int, default=None, help="denoising steps (default: the student's own)"
    )
    studio.add_argument(
        "--ice",
        choices=("auto", "loopback", "all"),
        default="auto",
        help="WebRTC interfaces: loopback only (auto for a local host) or all",
    )
    studio.add_argument("--recordings", help="keep recordings in this folder (default: a temporary one)")
    _add_serve_security(studio)
    studio.add_argument(
        "--rate",
        choices=("decoupled", "every-frame"),
        default="decoupled",
        help="decoupled: every camera frame answered, the model refreshing at its own rate; every-frame: "
        "the model on each frame it takes",
    )
    studio.set_defaults(run=_serve)

    generate = commands.add_parser(
        "generate", help="apply an effect to a clip with a trained model (offline)"
    )
    generate.add_argument("--model", default="teacher", help="teacher, student, or a checkpoint folder")
    generate.add_argument("--input", required=True, help="video file or image folder")
    what = generate.add_mutually_exclusive_group()
    what.add_argument("--effect", help="category id (see `effects list`)")
    what.add_argument("--prompt", help="free text describing the effect")
    generate.add_argument("--reference", help="an edited keyframe (PNG/JPEG at the clip's size)")
    generate.add_argument(
        "--reference-source", help="the frame the keyframe was edited from (default: frame 0)"
    )
    generate.add_argument(
        "--steps", type=int, default=None, help="sampling steps (default: 50 for a teacher, a student's own)"
    )
    generate.add_argument(
        "--start",
        type=float,
        default=1.0,
        help="1: from pure noise; below 1: from the source noised to this time",
    )
    generate.add_argument("--guidance-text", type=float, default=1.0)
    generate.add_argument("--guidance-reference", type=float, default=1.0)
    generate.add_argument("--seed", type=int, default=0)
    generate.add_argument("--max-frames", type=int, default=None)
    generate.add_argument("--output", required=True)
    generate.set_defaults(run=_generate)
    return parser


def _user_errors() -> tuple[type[BaseException], ...]:
    """Errors that mean bad input, shown as one line instead of a trace."""
    from streamingeffect.io import SourceError, VideoError
    from streamingeffect.io.images import ImageError
    from streamingeffect.io.live import OutputError
    from streamingeffect.models.checkpoint import CheckpointError
    from streamingeffect.runtime.control import ControlError

    return (
        CheckpointError,
        OutputError,
        ControlError,
        VideoError,
        ImageError,
        SourceError,
        ValueError,
        FileNotFoundError,
        KeyError,
        PermissionError,
        ImportError,
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING, format="%(levelname)s %(message)s"
    )
    run: Callable[[argparse.Namespace], None] = args.run
    try:
        run(args)
    except _user_errors() as error:
        if args.verbose:
            raise
        message = error.args[0] if isinstance(error, KeyError) and error.args else error
        print(f"error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
