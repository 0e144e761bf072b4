"""The words of KQL the parser knows: what the lab's subset evaluates, and what KQL has that it refuses.

A word KQL has but the subset does not is refused with ARG's `InvalidQueryLanguage` (never read as a column
name and never ignored); a word KQL does not have is a `ParserFailure`.
"""

from __future__ import annotations

from lab.resourcegraph.kql.syntax import JoinKind

# --- what the subset has, and what KQL has that the subset refuses ------------------------------------

SUPPORTED_OPERATORS = frozenset(
    {
        "where",
        "filter",
        "project",
        "project-away",
        "extend",
        "parse",
        "join",
        "summarize",
        "count",
        "distinct",
        "order",
        "sort",
        "take",
        "limit",
        "top",
    }
)
# Tabular operators that exist in KQL (Kusto's query/queries.md list) but not in the lab: refused with
# ARG's InvalidQueryLanguage rather than a parser error, because they are KQL.
KNOWN_KQL_OPERATORS = frozenset(
    {
        "as",
        "consume",
        "evaluate",
        "facet",
        "find",
        "fork",
        "getschema",
        "invoke",
        "lookup",
        "make-series",
        "mv-apply",
        "mv-expand",
        "mvexpand",
        "mvapply",
        "parse-where",
        "parse-kv",
        "partition",
        "print",
        "project-keep",
        "project-rename",
        "project-reorder",
        "range",
        "reduce",
        "render",
        "sample",
        "sample-distinct",
        "scan",
        "search",
        "serialize",
        "top-hitters",
        "top-nested",
        "union",
        "externaldata",
        "make-graph",
        "graph-match",
        "macro-expand",
        "datatable",
    }
)
# Kusto's binary string operators (datatypes-string-operators.md) the subset evaluates.
STRING_OPERATORS = frozenset(
    {"has", "has_cs", "contains", "contains_cs", "startswith", "startswith_cs", "endswith", "endswith_cs"}
)
# ...and the ones it does not (refused, never read as a column name).
UNSUPPORTED_STRING_OPERATORS = frozenset(
    {
        "hasprefix",
        "hasprefix_cs",
        "hassuffix",
        "hassuffix_cs",
        "has_all",
        "has_any",
        "matches",
        "between",
        "like",
        "notlike",
        "likecs",
        "notlikecs",
    }
)
COMPARISONS = frozenset({"==", "!=", "=~", "!~", "<", "<=", ">", ">="})
JOIN_KINDS: tuple[JoinKind, ...] = ("innerunique", "inner", "leftouter")
# The flavours Kusto has beyond ARG's three (join-operator.md); ARG's query-language.md lists only
# innerunique, inner and leftouter as supported.
KNOWN_JOIN_KINDS = frozenset(
    {
        "rightouter",
        "fullouter",
        "leftsemi",
        "leftanti",
        "anti",
        "leftantisemi",
        "rightsemi",
        "rightanti",
        "rightantisemi",
    }
)
PARSE_TYPES = frozenset({"string", "long", "int"})
# KQL's arithmetic operators: valid KQL, outside the subset.
ARITHMETIC = frozenset({"+", "-", "*", "/", "%"})
# Typed literal syntaxes (`dynamic([1, 2])`, `datetime(2024-01-01)`, `int(null)`; scalar-data-types/*.md).
TYPED_LITERALS = frozenset(
    {
        "dynamic",
        "datetime",
        "date",
        "timespan",
        "time",
        "guid",
        "decimal",
        "real",
        "double",
        "int",
        "long",
        "bool",
        "boolean",
        "string",
    }
)
CLAUSE_ENDS = frozenset({"|", ")", ""})
