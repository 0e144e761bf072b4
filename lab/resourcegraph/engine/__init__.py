"""Evaluation of the lab's KQL subset over Resource Graph's tables, with Kusto's types, nulls and case rules.

A parsed `Query` (`lab.resourcegraph.kql`) is compiled against the schema of its input, operator by
operator: every scalar expression becomes a Python closure with a static Kusto type, so type errors are
found before any row is read (as Kusto's semantic analysis does) and evaluation is one closure call per
row. The rules, each from Kusto's own documentation (MicrosoftDocs/dataexplorer-docs, `data-explorer/kusto/
query/`):

- **Types.** `string`, `long`, `int`, `real`, `bool` and `dynamic` (JSON values). A `string` is never
  null: its null is `""` (`scalar-data-types/null-values.md`: "The string data type doesn't support null
  values"); the other types have a null (`None`). A leftouter join fills unmatched cells with the null of
  the column's type, so a missing string is `""` and a missing `dynamic` is `null` (ARG's own sample "List
  all Azure Arc-enabled Kubernetes clusters without Azure Monitor extension" relies on that:
  `where connectedClusterId1 == ''`).
- **Nulls.** `==` of two nulls is null, of a null and a value is false; `!=` the opposite; `and`/`or` are
  three-valued (`false and null` is false, `true or null` is true); `where` keeps only rows whose predicate
  is true (null-values.md). `in` is an OR of `==`, `!in` an AND of `!=`.
- **Case.** `==`, `!=`, `in`, `*_cs` and `has_cs` are case-sensitive; `=~`, `!~`, `in~`, `has`,
  `contains`, `startswith`, `endswith` are not (`datatypes-string-operators.md`). `has` matches whole terms:
  maximal runs of alphanumeric characters ("`KustoExplorerQueryRun` has `Explorer`" is false).
- **Dynamic values** compare with a typed value by their JSON type (a JSON string with a `string`, a number
  with a number, a bool with a `bool`); `=~` and the string operators read them through `tostring()`, which
  is the value itself for a JSON string, compact JSON for arrays and objects, and `""` for null
  (`tostring-function.md`).
- **Names.** A computed column without a name is named after the column or property path it reads
  (`properties.x.y` → `properties_x_y`, also through `tostring`/`toint`/`tolong`, as ARG's own example
  `summarize count() by tostring(properties.storageProfile.osDisk.osType)` answers
  `properties_storageProfile_osDisk_osType`), else `Column1`, `Column2`... (`pack-array-function.md`). A join
  renames the right side's clashing columns `name1`, `name2`... (`join-innerunique.md`: `Key1`).
  `summarize count()` names its column `count_`, the `count` operator `Count`.

The package: `values` (types, tables, nulls, names), `scalars` (expressions), `functions`, and the tabular
operators in `tabular` (the pipeline and the simple operators), `parsing`, `joins` and `summaries`.
"""

from lab.resourcegraph.engine.tabular import TableSource, run_query, static_tables
from lab.resourcegraph.engine.values import Column, Row, ScalarType, Table, TableNotFound, table_format_type

__all__ = [
    "Column",
    "Row",
    "ScalarType",
    "Table",
    "TableNotFound",
    "TableSource",
    "run_query",
    "static_tables",
    "table_format_type",
]
