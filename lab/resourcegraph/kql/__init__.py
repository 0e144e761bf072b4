"""The syntax of the KQL subset the lab's Resource Graph serves: a tokenizer and a recursive-descent parser.

`parse_query(text)` turns a query into a `Query` (an AST of frozen dataclasses) or raises:

- `KqlSyntaxError` — the text is not KQL (an unexpected or unterminated token). ARG answers these with a
  `ParserFailure` detail carrying `line` (1-based), `characterPositionInLine` (0-based, ANTLR's convention,
  which the field name comes from) and the offending `token` (aztfexport issue #485 shows one);
- `KqlUnsupported` — valid KQL, outside the subset (`mv-expand`, `make-series`, `let`, an aggregation
  other than `count()`, a join flavour ARG refuses...). ARG answers operators it does not support with an
  `InvalidQueryLanguage` detail naming the `token` (azure-powershell issue #13762, `parse` before ARG
  supported it); the lab does the same for everything outside its subset, never ignoring it.

What the subset is, and why each rule: `lab/docs/resourcegraph.md`. Semantics (types, nulls, case rules)
live in `lab.resourcegraph.engine`; this package only knows shapes. KQL is case-sensitive for everything
(keywords, functions, column names; Kusto's `query/index.md`), except that ARG resolves table names
case-insensitively (its docs use `Resources` and `resources` alike), which the engine does.

The package: `lexer` (positions, errors, tokens), `syntax` (the AST), `vocabulary` (what the subset has and
what KQL has beyond it), `expressions` (the scalar grammar) and `parser` (queries and tabular operators).
"""

from lab.resourcegraph.kql.lexer import KqlError, KqlSemanticError, KqlSyntaxError, KqlUnsupported, Position
from lab.resourcegraph.kql.parser import Parser, parse_query
from lab.resourcegraph.kql.syntax import Join, Query, Take

__all__ = [
    "Join",
    "KqlError",
    "KqlSemanticError",
    "KqlSyntaxError",
    "KqlUnsupported",
    "Parser",
    "Position",
    "Query",
    "Take",
    "parse_query",
]
