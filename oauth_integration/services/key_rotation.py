"""Key rotation: re-encrypt every stored secret under the current key, and prove they all decrypt.

Envelopes are read raw (no decryption) to see which key sealed them; rewriting a row
decrypts it with whichever configured key made it and lets the field encrypt it again
under the current key. Rows are addressed by table name and primary key.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from django.db import models, transaction

from oauth_integration import crypto
from oauth_integration.exceptions import TokenDecryptionError
from oauth_integration.fields import Ciphertext, EncryptedTextField
from oauth_integration.models import OAuthToken, PkceCode

TABLES: dict[str, type[models.Model]] = {"connections": OAuthToken, "pending authorizations": PkceCode}
UNREADABLE_KEY_ID = "?"


@dataclass(frozen=True, slots=True)
class SealedRow:
    """One row's secrets as stored: who they belong to and which keys sealed them. No plaintext."""

    pk: int
    customer_identifier: str
    key_ids: frozenset[str]  # UNREADABLE_KEY_ID for a value that is not an envelope at all
    undecryptable: bool = False  # only checked when asked to verify


@dataclass
class KeyRotationReport:
    """What a rotation or check found, per table. Names customers, never secrets."""

    current_key_id: str
    table: str = ""  # the table being scanned
    totals: dict[str, int] = field(default_factory=dict)  # rows per table when its scan started
    scanned: dict[str, int] = field(default_factory=dict)
    resealed: int = 0  # rows re-encrypted under the current key
    old_key: int = 0  # rows with a secret still under a fallback key (check only)
    undecryptable: list[tuple[str, str]] = field(default_factory=list)  # (table, customer identifier)


def rotate_encryption_key(
    *, batch_size: int = 500, progress: Callable[[KeyRotationReport], None] | None = None
) -> KeyRotationReport:
    """Re-encrypt every secret that is not yet under TOKEN_ENCRYPTION_KEY.

    Only rows sealed (even partly) under another key are rewritten, a batch at a time,
    each batch in its own short transaction. An interrupted run therefore loses nothing
    and a rerun continues where it stopped; several runs at once are harmless. Rows that
    no configured key decrypts are left untouched and listed in the report. ``progress``
    is called after each batch. Raises EncryptionKeyError when the keys are not configured.
    """
    report = KeyRotationReport(current_key_id=crypto.keyring().current_id)
    for table, rows in _scan(report, batch_size=batch_size, verify=False):
        stale = [row.pk for row in rows if row.key_ids - {report.current_key_id}]
        if stale:
            resealed, failed = _reseal(TABLES[table], stale)
            report.resealed += resealed
            report.undecryptable.extend((table, customer) for customer in failed)
        if progress is not None:
            progress(report)
    return report


def check_encryption(
    *, batch_size: int = 500, progress: Callable[[KeyRotationReport], None] | None = None
) -> KeyRotationReport:
    """Prove that every stored secret decrypts (bound to its row) with the configured keys.

    Reports the rows that do not, and how many rows are still under a fallback key.
    Changes nothing. Raises EncryptionKeyError when the keys are not configured.
    """
    report = KeyRotationReport(current_key_id=crypto.keyring().current_id)
    for table, rows in _scan(report, batch_size=batch_size, verify=True):
        for row in rows:
            if row.undecryptable:
                report.undecryptable.append((table, row.customer_identifier))
            elif row.key_ids - {report.current_key_id}:
                report.old_key += 1
        if progress is not None:
            progress(report)
    return report


def _scan(report: KeyRotationReport, *, batch_size: int, verify: bool) -> Iterator[tuple[str, list[SealedRow]]]:
    """Every table's rows, a batch at a time in primary key order, counted in ``report``."""
    for table, model in TABLES.items():
        report.table = table
        report.totals[table] = model._base_manager.count()
        report.scanned[table] = 0
        after = 0
        while rows := _page(model, after_pk=after, limit=batch_size, verify=verify):
            report.scanned[table] += len(rows)
            after = rows[-1].pk
            yield table, rows


def _page(model: type[models.Model], *, after_pk: int, limit: int, verify: bool) -> list[SealedRow]:
    """Up to ``limit`` rows with a primary key above ``after_pk``, in order.

    ``verify``: also decrypt every secret (bound to its row) and flag the rows that fail.
    """
    columns = _secret_fields(model)
    binds = sorted({column.bind_to for column in columns})
    rows = (
        model._base_manager.filter(pk__gt=after_pk)
        .order_by("pk")
        .values_list("pk", "customer_identifier", *binds, *(column.name for column in columns))[:limit]
    )
    sealed: list[SealedRow] = []
    for pk, customer_identifier, *values in rows:
        bind_values = dict(zip(binds, values[: len(binds)], strict=True))
        key_ids: set[str] = set()
        undecryptable = False
        for column, value in zip(columns, values[len(binds) :], strict=True):
            if value is None:
                continue
            try:
                key_ids.add(crypto.envelope_key_id(value.envelope))
                if verify:
                    crypto.decrypt(value.envelope, context=column.context(bind_values[column.bind_to]))
            except TokenDecryptionError:
                key_ids.add(UNREADABLE_KEY_ID)
                undecryptable = True
        sealed.append(SealedRow(pk, customer_identifier, frozenset(key_ids), undecryptable))
    return sealed


def _reseal(model: type[models.Model], pks: list[int]) -> tuple[int, list[str]]:
    """Re-encrypt these rows' secrets under the current key, in one short transaction.

    Rows are locked and re-read inside the transaction, so a token written meanwhile by a
    refresh is never overwritten with an older one; rows already under the current
    key are left alone. Returns (rows rewritten, customer identifiers of rows that
    cannot be decrypted and were left untouched).
    """
    columns = _secret_fields(model)
    current = crypto.keyring().current_id
    rewritten, failed = 0, []
    with transaction.atomic():
        for row in model._base_manager.select_for_update().filter(pk__in=pks).order_by("pk"):
            stored = [row.__dict__.get(column.attname) for column in columns]
            if all(not isinstance(v, Ciphertext) or _key_id_or_none(v) == current for v in stored):
                continue
            try:
                for column in columns:
                    # Reading decrypts (with any configured key); assigning binds it to this
                    # row again, and save() encrypts it under the current key.
                    setattr(row, column.attname, getattr(row, column.attname))
            except TokenDecryptionError:
                failed.append(row.customer_identifier)
                continue
            row.save(update_fields=[column.name for column in columns])
            rewritten += 1
    return rewritten, failed


def _secret_fields(model: type[models.Model]) -> list[EncryptedTextField]:
    return [column for column in model._meta.concrete_fields if isinstance(column, EncryptedTextField)]


def _key_id_or_none(value: Ciphertext) -> str | None:
    try:
        return crypto.envelope_key_id(value.envelope)
    except TokenDecryptionError:
        return None
