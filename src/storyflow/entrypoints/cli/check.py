"""storyflow check, storyflow docs."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from storyflow.entrypoints.cli.common import echo, emit_json, json_option, option, service_context

# The check exits with the status of a refusal by a rule when it finds anything.
FINDINGS_EXIT = 3


def reference_files() -> dict[str, str]:
    """Every generated reference file, from the live objects and this command tree."""
    from storyflow.entrypoints.cli.main import cli
    from storyflow.entrypoints.cli.reference import cli_reference
    from storyflow.services.docs import reference

    return reference(cli_reference(cli))


def _relative(root: Path, paths: tuple[str, ...]) -> tuple[list[str] | None, list[str]]:
    """PATHS (relative to the current directory) as paths relative to the workspace root,
    and the ones outside it separately. A path that is the workspace root (``.`` there, or
    ``"$PWD"``) or a folder holding it asks for the whole workspace: None."""
    inside: list[str] = []
    outside: list[str] = []
    base = root.resolve()
    whole = False
    for raw in paths:
        path = Path(raw).resolve()
        if path == base or path in base.parents:
            whole = True
            continue
        try:
            inside.append(path.relative_to(base).as_posix())
        except ValueError:
            outside.append(raw)
    return (None if whole or not paths else inside), outside


def _hook_state(root: Path) -> str:
    """The pre-commit hook's state; ``none`` outside a git repository (or without git)."""
    from storyflow.bootstrap import git_repository
    from storyflow.errors import StoryflowError
    from storyflow.services.hooks import hook_state

    try:
        return hook_state(git_repository(root), workspace=root)
    except StoryflowError:  # no repository, or an unusable hooks folder: not check's concern
        return "none"


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


@click.command()
@click.argument("paths", nargs=-1, type=click.Path())
@option(
    "--staged",
    is_flag=True,
    help="Read the files a commit would hold as git's index has them (staged), not as the "
    "work tree has them: what the pre-commit hook runs.",
)
@json_option
def check(paths: tuple[str, ...], staged: bool, as_json: bool) -> None:
    """Validate the workspace: every story and artifact file against its schema and its
    evidence, naming and folders, the front matter and the append-only Agent Log against the
    database, tokens for every phase a completed story ran, dependency cycles, duplicate IDs,
    stale generated docs and broken links in the docs. Read-only.

    PATHS limits the check to what those files concern (the pre-commit hook passes the
    staged files); a path that is the workspace root (or holds it) checks everything, and
    paths outside the workspace are ignored, and named. With --staged a file whose staged
    content differs from the work tree's is checked as staged. Exit status 0 when clean, 3 on
    findings; each finding names the file, the line where known, its code
    (docs/reference/checks.md) and a hint.
    """
    from storyflow.bootstrap import generated_docs
    from storyflow.services import docs as docs_service
    from storyflow.services.check import REFERENCE_DIR, run_check

    with service_context() as ctx:
        inside, outside = _relative(ctx.files.root, paths)
        if staged:
            from storyflow.adapters.vcs.git import index_view

            ctx.files.use_overlay(index_view(ctx.files.root))
        folder = generated_docs(ctx.files.root / REFERENCE_DIR)

        def docs_drift() -> list[tuple[str, str]]:
            existing = folder.generated()
            if not existing:  # the workspace does not keep generated docs
                return []
            found = docs_service.drift_in(folder, reference_files())
            return [(f"{REFERENCE_DIR}/{d.path}", d.reason) for d in found]

        def tracked_state() -> list[str]:
            from storyflow.adapters.vcs.git import tracked_files
            from storyflow.config import STATE_DIR

            return tracked_files(ctx.files.root, STATE_DIR)

        report = run_check(
            ctx, paths=inside, ignored=outside, docs_drift=docs_drift, tracked_state=tracked_state
        )
        report.hook = _hook_state(ctx.files.root)
    if as_json:
        emit_json(report.to_json())
    else:
        for finding in report.findings:
            where = finding.file or "(workspace)"
            if finding.line:
                where += f":{finding.line}"
            echo(f"{where}: {finding.code}: {finding.message}")
            echo(f"    hint: {finding.hint}")
        summary = f"{_count(report.stories, 'story folder')}, {_count(report.files, 'file')}"
        if report.database == "empty":
            summary += "; the database is empty, so the files were checked on their own"
        if report.in_run:
            echo(
                f"note: a run holds {', '.join(report.in_run)}: its files are work in "
                "progress, not counted (check again when the run has finished)"
            )
        if report.ignored:
            echo(f"note: ignored, outside the workspace: {', '.join(report.ignored)}")
        if report.hook == "outdated":
            echo(
                "note: the pre-commit hook was written by an earlier storyflow and may check "
                "the work tree instead of what is staged: storyflow hooks install updates it"
            )
        if report.paths is not None and not report.stories and not report.files:
            echo(
                "note: PATHS name no story folder or file storyflow checks (storyflow check "
                "without PATHS checks the whole workspace)"
            )
        verdict = "clean" if report.clean else f"{len(report.findings)} finding(s)"
        given = len(report.paths or ()) + len(report.ignored)
        scope = "" if report.paths is None else f" of {_count(given, 'path')}"
        echo(f"storyflow check: {verdict}{scope} ({summary})")
    if not report.clean:
        sys.exit(FINDINGS_EXIT)  # after the output; not an error, so no error body


@click.command()
@option(
    "--check",
    "check_only",
    is_flag=True,
    help="Write nothing; exit 3 and name the stale files when the docs drifted.",
)
@option(
    "--output",
    type=click.Path(file_okay=False),
    help="The reference folder (default: docs/reference in the workspace, else here).",
)
@option(
    "--force",
    is_flag=True,
    help="Replace files storyflow docs did not write that are where a generated file goes.",
)
@json_option
@click.pass_context
def docs(
    click_ctx: click.Context, check_only: bool, output: str | None, force: bool, as_json: bool
) -> None:
    """Write the reference docs (statuses and edges, guards, error codes, budgets, layouts,
    artifact JSON Schemas, check codes, this command reference) from the live objects.
    Byte-stable: no timestamps. Needs no database.

    A file in the folder without the generated-file marker, where a generated file goes, is
    never replaced without --force (exit 5, FILE_EXISTS, nothing written); --check reports
    it as not generated."""
    from storyflow.bootstrap import generated_docs
    from storyflow.config import find_root
    from storyflow.services import docs as docs_service

    if output is None:
        workspace = (click_ctx.find_root().obj or {}).get("workspace")
        base = Path(workspace) if workspace else (find_root(Path.cwd()) or Path.cwd())
        folder = base / docs_service.DEFAULT_DIR
    else:
        folder = Path(output)
    if folder.exists() and not folder.is_dir():  # click lets a FIFO or device through
        from storyflow.errors import InvalidInput

        raise InvalidInput(
            f"{folder} is not a folder",
            hint="name a folder (or one that does not exist yet) with --output",
            details={"directory": str(folder)},
        )
    wanted = reference_files()
    found = docs_service.update(
        generated_docs(folder), wanted, check=check_only, force=force, shown=str(folder)
    )
    if as_json:
        emit_json(
            {
                "directory": str(folder),
                "check": check_only,
                "files": len(wanted),
                "stale" if check_only else "written": [
                    {"path": d.path, "reason": d.reason} for d in found
                ],
            }
        )
    else:
        for item in found:
            verb = "stale" if check_only else "wrote" if item.path in wanted else "removed"
            echo(f"{verb}: {folder / item.path} ({item.reason})")
        state = "up to date" if not found else ("stale" if check_only else "updated")
        echo(f"storyflow docs: {folder} {state} ({len(wanted)} files)")
    if check_only and found:
        sys.exit(FINDINGS_EXIT)
