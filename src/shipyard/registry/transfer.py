"""Copying one model version, whole, from one project into another: what a deployment carries.

>>> target = Project.init(folder / ".shipyard", database_url=..., artifact_url=...)
>>> copied = copy_version("churn@champion", source=project, target=target)
>>> copied.version.ref                      # the same name and number as in the source
'churn@3'

The target gets the registered model (name, description, tags, who created it and when), the
version under the same number with everything recorded about it (flavor and flavor metadata,
signature, ONNX sibling and its check, packages, metrics, params, run id, dataset refs,
description, tags, author and time), the aliases that point at it with an alias event each, and
every blob it needs: its files and their manifest, the ONNX files and theirs. Each blob is read
from the source checked against its sha256, and hashed again as the target stores it; a blob
whose bytes do not match stops the copy before any row is written.

Lineage stays as references, not copies: the run id and the dataset version refs are kept on
the version as they are (the schema has no foreign key on them), but the run, its environment,
its metrics history and the datasets are not copied: they can be large and private, and a
served model does not read them. `Transfer.source` says which project those references name,
so a deployment can record where to walk its lineage (see `shipyard.deploy`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy import select

from shipyard.errors import ArtifactCorrupted, InvalidInput
from shipyard.registry.versions import ModelVersion, get, version_record
from shipyard.store.models import (
    AliasEventRecord,
    ModelAliasRecord,
    ModelVersionRecord,
    RegisteredModelRecord,
)

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from shipyard.project import Project


@dataclass(frozen=True)
class SourceProject:
    """Where a copied version came from: enough to find its run and datasets again."""

    home: str
    metadata: str  # the database URL, password hidden
    artifacts: str


@dataclass(frozen=True)
class Transfer:
    """A version copied into the target project, and the project it came from."""

    version: ModelVersion
    source: SourceProject
    blobs: int  # blobs the version needs, each verified (already-present ones included)
    created: bool  # False when the target already held this exact version


def blobs_of(record: ModelVersionRecord) -> list[str]:
    """Every blob a version needs: its files, its manifest, and the same for its ONNX sibling."""
    digests = [*record.files.values(), record.artifact]
    if record.onnx is not None:
        digests += [*record.onnx["files"].values(), record.onnx["artifact"]]
    return list(dict.fromkeys(str(d) for d in digests))


def describe(project: Project) -> SourceProject:
    return SourceProject(
        home=str(project.home.resolve()),
        metadata=project.metadata.url.render_as_string(hide_password=True),
        artifacts=project.artifacts.url,
    )


def copy_version(ref: str, *, source: Project, target: Project) -> Transfer:
    """Copy the version `ref` names in `source` (NAME, NAME@VERSION, NAME@ALIAS) into `target`.

    Copying the same version again is a no-op (`created=False`). Refused, with nothing
    written, when the target holds a different version of that model under the same number, or
    one of the aliases points at another version there.
    """
    with source.metadata.read() as session:
        record, name = version_record(session, ref)
        model = session.get(RegisteredModelRecord, record.model_id)
        assert model is not None
        aliases = list(
            session.scalars(
                select(ModelAliasRecord)
                .where(ModelAliasRecord.version_id == record.id)
                .order_by(ModelAliasRecord.alias)
            )
        )
        session.expunge_all()
    where = describe(source)
    digests = blobs_of(record)
    for digest in digests:
        _copy_blob(digest, source, target)

    def write(session: Session) -> bool:
        target_model = session.scalar(
            select(RegisteredModelRecord).where(RegisteredModelRecord.name == name)
        )
        if target_model is None:
            target_model = RegisteredModelRecord(
                name=name,
                description=model.description,
                tags=dict(model.tags),
                created_at=model.created_at,
                created_by=model.created_by,
            )
            session.add(target_model)
            session.flush()
        existing = session.scalar(
            select(ModelVersionRecord).where(
                ModelVersionRecord.model_id == target_model.id,
                ModelVersionRecord.version == record.version,
            )
        )
        created = existing is None
        if existing is None:
            existing = _copied_row(record, target_model.id)
            session.add(existing)
            session.flush()
        elif existing.artifact != record.artifact:
            raise InvalidInput(
                f"the target project {target.home} already has a different {name}@"
                f"{record.version} (artifact sha256:{existing.artifact[:12]}, not "
                f"sha256:{record.artifact[:12]}); copy into a fresh project"
            )
        for alias in aliases:
            _copy_alias(session, alias, target_model.id, existing, where, name)
        return created

    created = target.metadata.write_with_retry(write)
    copied = get(f"{name}@{record.version}", project=target)
    return Transfer(version=copied, source=where, blobs=len(digests), created=created)


def _copy_blob(digest: str, source: Project, target: Project) -> None:
    # `fetch` checks the source's bytes against the digest and `put_file` hashes them again as
    # it stores them (replacing a damaged copy the target may hold).
    stored = target.artifacts.put_file(source.artifacts.fetch(digest))
    if stored.digest != digest:
        if stored.created:
            target.artifacts.delete(stored.digest)
        raise ArtifactCorrupted(
            f"blob sha256:{digest} changed while it was copied from {source.artifacts.url} "
            f"(the copy hashes to sha256:{stored.digest}); nothing was recorded, retry"
        )


def _copied_row(record: ModelVersionRecord, model_id: int) -> ModelVersionRecord:
    return ModelVersionRecord(
        model_id=model_id,
        version=record.version,
        flavor=record.flavor,
        artifact=record.artifact,
        files=dict(record.files),
        flavor_meta=dict(record.flavor_meta),
        signature=record.signature,
        run_id=record.run_id,  # a reference into the source project, kept as data
        datasets=dict(record.datasets),
        dependencies=dict(record.dependencies),
        metrics=dict(record.metrics),
        params=dict(record.params),
        onnx=record.onnx,
        source=record.source,
        description=record.description,
        tags=dict(record.tags),
        created_at=record.created_at,
        created_by=record.created_by,
    )


def _copy_alias(
    session: Session,
    alias: ModelAliasRecord,
    model_id: int,
    row: ModelVersionRecord,
    where: SourceProject,
    name: str,
) -> None:
    present = session.get(ModelAliasRecord, (model_id, alias.alias))
    if present is not None:
        if present.version_id != row.id:
            raise InvalidInput(
                f"alias {name}@{alias.alias} already points at another version in the target "
                "project; copy into a fresh project"
            )
        return
    session.add(
        ModelAliasRecord(
            model_id=model_id,
            alias=alias.alias,
            version_id=row.id,
            set_at=alias.set_at,
            set_by=alias.set_by,
        )
    )
    session.add(
        AliasEventRecord(
            model_id=model_id,
            alias=alias.alias,
            version=row.version,
            previous=None,
            user=alias.set_by,
            at=alias.set_at,
            reason=f"copied with the version from {where.home}, where it was set",
            forced=False,
        )
    )
