"""``recsys-lite experiments``: the running experiment's figures, and promoting its winner."""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.console import Console

from recsys_lite.cli_options import DbOption, ModelDirOption
from recsys_lite.config import Settings, get_settings
from recsys_lite.data.audit import AuditLog, audit_path
from recsys_lite.data.store import Store
from recsys_lite.errors import InvalidInputError, RecsysError
from recsys_lite.experiments.design import load_experiment
from recsys_lite.experiments.report import ab_status, read_events
from recsys_lite.models.artifact import MANIFEST, load_artifact
from recsys_lite.models.versions import new_version_id, publish_version, versions_folder

experiments_app = typer.Typer(
    help="A/B tests and interleaving: figures, and serving the winner.", no_args_is_help=True
)
console = Console(stderr=True)
out = Console()
FileOption = Annotated[
    Optional[Path],  # noqa: UP045
    typer.Option("--experiment-file", help="experiment file (default: $EXPERIMENT_FILE)"),
]


def _settings(file: Path | None, db: Path | None, model_dir: Path | None) -> Settings:
    base = get_settings()
    settings = base.model_copy(
        update={
            "experiment_file": file or base.experiment_file,
            "db_path": db or base.db_path,
            "model_dir": model_dir or base.model_dir,
        }
    )
    if settings.experiment_file is None:
        raise InvalidInputError("no experiment file: pass --experiment-file or set EXPERIMENT_FILE")
    return settings


def _status(settings: Settings) -> dict[str, Any]:
    assert settings.experiment_file is not None
    experiment = load_experiment(settings.experiment_file)
    return ab_status(experiment, *read_events(Store(settings.db_path)))


@experiments_app.command("status")
def status(file: FileOption = None, db: DbOption = None) -> None:
    """The figures GET /ab/status reports, as JSON."""
    try:
        document = _status(_settings(file, db, None))
    except RecsysError as exc:
        console.print(f"[bold red]error:[/] {exc.message}", highlight=False)
        raise typer.Exit(code=1) from None
    out.print_json(json.dumps(document))


@experiments_app.command("promote")
def promote(
    variant: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option("--variant", help="serve this variant (default: the significant winner)"),
    ] = None,
    file: FileOption = None,
    db: DbOption = None,
    model_dir: ModelDirOption = None,
) -> None:
    """Serve a variant's artifact at MODEL_DIR as a new version (running servers swap it in;
    `recsys-lite rollback` undoes it)."""
    try:
        settings = _settings(file, db, model_dir)
        assert settings.experiment_file is not None
        experiment = load_experiment(settings.experiment_file)
        document: dict[str, Any] | None = None
        if variant is None:
            document = _status(settings)
            variant = document["winner"]
            if variant is None:
                raise InvalidInputError(
                    f"no variant wins on {experiment.primary_metric} at 5% yet; name one with"
                    " --variant to promote it anyway"
                )
        chosen = experiment.variant(variant)
        if chosen.artifact is None:
            out.print(f"{variant} already serves the artifact at {settings.model_dir}")
            return
        version = publish_copy(chosen.artifact, settings.model_dir)
    except RecsysError as exc:
        console.print(f"[bold red]error:[/] {exc.message}", highlight=False)
        raise typer.Exit(code=1) from None
    metric = experiment.primary_metric
    lift = None if document is None else document["variants"][variant].get("lift", {}).get(metric)
    AuditLog(audit_path(settings.db_path)).append(
        "experiment.promote",
        actor="cli",
        details={
            "experiment": experiment.name,
            "variant": variant,
            "version": version,
            "artifact": str(chosen.artifact),
            "chosen_by": "winner" if document else "operator",
            "lift": lift,
        },
    )
    out.print(f"{settings.model_dir} now serves {variant} ({chosen.artifact}) as {version}")


def publish_copy(source: Path, served: Path) -> str:
    """A copy of an artifact, as a new version of the served path (its own version id in the
    manifest, so every server's watcher sees a new artifact)."""
    load_artifact(source)  # an artifact that does not load is never served
    folder = versions_folder(served)
    folder.mkdir(parents=True, exist_ok=True)
    version = new_version_id()
    staging = Path(tempfile.mkdtemp(prefix=f".{version}.tmp-", dir=folder))
    try:
        for file in Path(source).resolve().iterdir():
            if file.is_file():
                shutil.copy2(file, staging / file.name)
        manifest = json.loads((staging / MANIFEST).read_text())
        manifest |= {"version": version, "promoted_from": str(source)}
        (staging / MANIFEST).write_text(json.dumps(manifest, indent=2))
        publish_version(staging, served, version)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return version
