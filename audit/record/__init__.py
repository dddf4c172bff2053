"""The typed, versioned record every command writes, and the names it uses (the bottom layer)."""

from audit.record.models import SCHEMA, Record, evidence_view
from audit.record.names import CommandName, FlagKind, Label, Operation, StatisticName

__all__ = ["SCHEMA", "CommandName", "FlagKind", "Label", "Operation", "Record", "StatisticName", "evidence_view"]
