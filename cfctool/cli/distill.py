"""`cfctool distill TEACHER.st --student ARCH [student and training flags] [--alpha A]
[--temperature T] [--kd-loss kl|mse] [--init STUDENT.st] -o OUT.st`; the flags are derived
from `configs.DistillConfig`, `ArchConfig` and `TrainConfig`."""

from __future__ import annotations

from typing import Annotated

import typer

from cfctool.cli import options
from cfctool.configs import ArchConfig, DistillConfig, TrainConfig

# the student's weight-init scheme comes from the preset: `--init` names a starting checkpoint here
_EXCLUDED = ("init",)


def distill_command(
    ctx: typer.Context,
    checkpoint: options.Checkpoint,
    output: options.OutputCheckpoint = None,
    data: options.Data = None,
    dataset: Annotated[
        str | None,
        typer.Option(
            help="The student's data set: the teacher's (the default), or another view of the same rows, which the "
            "teacher reads in its own view (e.g. pmnist for a teacher of mnist images)."
        ),
    ] = None,
    resume: Annotated[bool, typer.Option(help="Continue an interrupted distillation from its training state.")] = False,
    config: options.Config = None,
    print_config: options.PrintConfig = False,
    quiet: options.Quiet = False,
    **settings,
):
    """Train a smaller student on a teacher's task: alpha * CE(labels) + (1 - alpha) * KD(teacher).

    The student is any family (--student) with the usual training flags over the teacher's data
    set preset; the teacher runs frozen once over the training split and its logits travel with
    the rows. --init starts the student from a checkpoint (prune, then distill); --resume continues
    an interrupted run. The student's history names the teacher by path and sha256.
    """
    from dataclasses import fields

    from cfctool.cli.io import check_output, read_checkpoint, write_checkpoint
    from cfctool.cli.progress import interrupted_run, status_lines, training_progress
    from cfctool.configs import from_settings, load_config_file
    from cfctool.ops.distill import distill, student_run, validate

    names = {f.name for f in fields(DistillConfig)}
    file_values = load_config_file(config, "distill") if config else {}
    cfg = from_settings(DistillConfig, {k: v for k, v in file_values.items() if k in names}, settings)
    cfg.validate()
    if not print_config:
        output = options.required_output(output)
        check_output(output, inputs=(checkpoint, cfg.init_checkpoint, config))
    teacher = read_checkpoint(checkpoint)
    validate(teacher, cfg, dataset)
    overrides = {k: v for k, v in settings.items() if k not in names and v is not None}
    student_files = {k: v for k, v in file_values.items() if k not in names}
    if print_config:  # what the student's history entry will store: its run, then the distillation's own
        import yaml

        from cfctool.configs import stored

        run = student_run(teacher, cfg, overrides, dataset, student_files)
        print(yaml.safe_dump(stored("distill", {**run.to_dict(), "distill": cfg.to_dict()}), sort_keys=False), end="")
        return
    assert output is not None  # required above
    try:
        with training_progress(quiet) as progress:
            out = distill(
                teacher,
                cfg,
                overrides,
                file_values=student_files,
                data_dir=data,
                dataset_name=dataset,
                argv=(ctx.obj or {}).get("argv"),
                notify=status_lines(quiet),
                progress=progress,
                output=output,
                resume=resume,
            )
    except KeyboardInterrupt:
        raise interrupted_run(output, "run the same command with --resume to continue") from None
    write_checkpoint(out, output)


def register(app: typer.Typer) -> None:
    options.with_parameters(
        distill_command,
        options.setting_parameters(
            {DistillConfig: "Distillation settings", ArchConfig: "Student settings", TrainConfig: "Training settings"},
            exclude=_EXCLUDED,
        ),
    )
    app.command(
        "distill",
        epilog=options.example("cfctool distill teacher.st --student cfc-ncp --hidden 64 --epochs 10 -o student.st"),
    )(distill_command)
