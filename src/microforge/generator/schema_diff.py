"""Migrations from the difference of two table definitions (before and after a spec change).

Comparing two MetaData objects needs no database, so `generate` is deterministic: the same
spec change always yields the same migration. Alembic renders the operations.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from alembic.autogenerate import render_python_code
from alembic.operations import ops
from sqlalchemy import Column, ForeignKeyConstraint, Index, MetaData, Table, UniqueConstraint


def load_metadata(source: str, filename: str) -> MetaData:
    """Execute a generated tables module and return its MetaData."""
    namespace: dict[str, Any] = {}
    exec(compile(source, filename, "exec"), namespace)
    metadata = namespace["metadata"]
    assert isinstance(metadata, MetaData)
    return metadata


def _type_signature(column: Column[Any]) -> str:
    return repr(column.type)


def _default_signature(column: Column[Any]) -> str | None:
    default = column.server_default
    arg = getattr(default, "arg", None)
    return str(getattr(arg, "text", arg)) if arg is not None else None


def _named(items: Any) -> dict[str, Any]:
    return {str(item.name): item for item in items if item.name}


def _signature(item: Any) -> tuple[Any, ...]:
    columns = tuple(c.name for c in item.columns)
    if isinstance(item, ForeignKeyConstraint):
        return (columns, tuple(e.target_fullname for e in item.elements), item.ondelete)
    return (columns, getattr(item, "unique", None))


@dataclass
class SchemaDiff:
    """Upgrade and downgrade operations between two versions of the tables."""

    upgrade: ops.UpgradeOps
    downgrade: ops.UpgradeOps


def _create(table: Table) -> list[Any]:
    indexes = sorted(table.indexes, key=lambda i: str(i.name))
    return [ops.CreateTableOp.from_table(table), *map(ops.CreateIndexOp.from_index, indexes)]


def diff_metadata(old: MetaData, new: MetaData) -> SchemaDiff:
    # Dropping a table takes its indexes along; dropping them first fails on MariaDB
    # when a foreign key needs them, so table drops are a single operation.
    upgrade: list[Any] = []
    downgrade: list[Any] = []
    for table in new.sorted_tables:
        if table.name not in old.tables:
            upgrade.extend(_create(table))
            downgrade.insert(0, ops.DropTableOp.from_table(table))
    for table in new.sorted_tables:
        if table.name in old.tables:
            changes = _table_changes(old.tables[table.name], table)
            if changes:
                modify = ops.ModifyTableOps(table.name, changes)
                upgrade.append(modify)
                downgrade.insert(0, modify.reverse())
    for table in reversed(old.sorted_tables):
        if table.name not in new.tables:
            upgrade.append(ops.DropTableOp.from_table(table))
            downgrade[:0] = _create(table)
    return SchemaDiff(ops.UpgradeOps(ops=upgrade), ops.UpgradeOps(ops=downgrade))


def _table_changes(old: Table, new: Table) -> list[Any]:
    changes: list[Any] = []
    name = new.name
    old_fks = _named(c for c in old.constraints if isinstance(c, ForeignKeyConstraint))
    new_fks = _named(c for c in new.constraints if isinstance(c, ForeignKeyConstraint))
    old_uqs = _named(c for c in old.constraints if isinstance(c, UniqueConstraint))
    new_uqs = _named(c for c in new.constraints if isinstance(c, UniqueConstraint))
    old_ix: dict[str, Index] = _named(old.indexes)
    new_ix: dict[str, Index] = _named(new.indexes)
    # Drop what goes away (indexes and constraints before their columns).
    for key in sorted(old_ix):
        if key not in new_ix or _signature(old_ix[key]) != _signature(new_ix[key]):
            changes.append(ops.DropIndexOp.from_index(old_ix[key]))
    for old_items, new_items in ((old_uqs, new_uqs), (old_fks, new_fks)):
        for key in sorted(old_items):
            if key not in new_items or _signature(old_items[key]) != _signature(new_items[key]):
                changes.append(ops.DropConstraintOp.from_constraint(old_items[key]))
    for column in old.columns:
        if column.name not in new.columns:
            changes.append(ops.DropColumnOp.from_column_and_tablename(None, name, column))
    for column in new.columns:
        if column.name not in old.columns:
            added = Column(
                column.name,
                column.type,
                nullable=column.nullable,
                server_default=column.server_default,
                comment=column.comment,
            )
            changes.append(ops.AddColumnOp.from_column_and_tablename(None, name, added))
            continue
        before = old.columns[column.name]
        type_changed = _type_signature(before) != _type_signature(column)
        null_changed = before.nullable != column.nullable
        default_changed = _default_signature(before) != _default_signature(column)
        if type_changed or null_changed or default_changed:
            changes.append(
                ops.AlterColumnOp(
                    name,
                    column.name,
                    existing_type=before.type,
                    existing_nullable=before.nullable,
                    existing_server_default=before.server_default,
                    modify_type=column.type if type_changed else None,
                    modify_nullable=column.nullable if null_changed else None,
                    modify_server_default=column.server_default if default_changed else False,
                )
            )
    for old_items, new_items in ((old_uqs, new_uqs), (old_fks, new_fks)):
        for key in sorted(new_items):
            if key not in old_items or _signature(old_items[key]) != _signature(new_items[key]):
                changes.append(ops.AddConstraintOp.from_constraint(new_items[key]))
    for key in sorted(new_ix):
        if key not in old_ix or _signature(old_ix[key]) != _signature(new_ix[key]):
            changes.append(ops.CreateIndexOp.from_index(new_ix[key]))
    return changes


def describe(upgrade: ops.UpgradeOps) -> list[str]:
    """Short human lines for a migration's docstring and the CLI output."""
    lines: list[str] = []
    for op in upgrade.ops:
        if isinstance(op, ops.CreateTableOp):
            lines.append(f"create table {op.table_name}")
        elif isinstance(op, ops.DropTableOp):
            lines.append(f"drop table {op.table_name}")
        elif isinstance(op, ops.ModifyTableOps):
            for change in op.ops:
                lines.append(f"{op.table_name}: {_describe_change(change)}")
    return lines


def _describe_change(change: Any) -> str:
    if isinstance(change, ops.AddColumnOp):
        return f"add column {change.column.name}"
    if isinstance(change, ops.DropColumnOp):
        return f"drop column {change.column_name}"
    if isinstance(change, ops.AlterColumnOp):
        return f"alter column {change.column_name}"
    if isinstance(change, ops.CreateIndexOp):
        return f"create index {change.index_name}"
    if isinstance(change, ops.DropIndexOp):
        return f"drop index {change.index_name}"
    if isinstance(change, ops.AddConstraintOp):
        return f"add constraint {change.to_constraint().name}"
    if isinstance(change, ops.DropConstraintOp):
        return f"drop constraint {change.constraint_name}"
    return type(change).__name__


def render_ops(diff: SchemaDiff) -> tuple[str, str]:
    """(upgrade body, downgrade body) as Python source, batch mode for SQLite."""
    return _clean(render_python_code(diff.upgrade, render_as_batch=True)), _clean(
        render_python_code(diff.downgrade, render_as_batch=True)
    )


def _clean(code: str) -> str:
    lines = [line for line in code.splitlines() if not line.strip().startswith("# ###")]
    text = "\n".join(line[4:] if line.startswith("    ") else line for line in lines).strip()
    return text or "pass"
