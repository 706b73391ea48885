"""From the nature of the data to a plan: read a folder or table, infer each column's modality from its
content, and choose the task, encoders, fusion, head and metric (``xmodal plan``)."""

from xmodal.automl.infer import ColumnType, encoder_family, infer_column, infer_columns
from xmodal.automl.plan import Plan, TargetError, describe, infer_task, make_plan
from xmodal.automl.sniff import Sniffed, sniff
from xmodal.automl.sources import Table, load_data, read_table

__all__ = [
    "ColumnType", "Plan", "Sniffed", "Table", "TargetError", "describe", "encoder_family", "infer_column",
    "infer_columns", "infer_task", "load_data", "make_plan", "read_table", "sniff",
]
