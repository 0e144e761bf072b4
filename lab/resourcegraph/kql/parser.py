"""The tabular half of the parser: a query is a table and a pipeline of operators, each its own rule."""

from __future__ import annotations

from collections.abc import Callable

from lab.resourcegraph.kql.expressions import ExpressionParser
from lab.resourcegraph.kql.lexer import KqlSemanticError, KqlSyntaxError, KqlUnsupported, Position, Token
from lab.resourcegraph.kql.syntax import (
    Aggregate,
    Assignment,
    Count,
    Distinct,
    Extend,
    Join,
    JoinCondition,
    JoinKind,
    Operator,
    Parse,
    ParseCapture,
    ParsePart,
    Project,
    ProjectAway,
    Query,
    Sort,
    SortKey,
    Summarize,
    Take,
    Top,
    Where,
)
from lab.resourcegraph.kql.vocabulary import (
    CLAUSE_ENDS,
    JOIN_KINDS,
    KNOWN_JOIN_KINDS,
    KNOWN_KQL_OPERATORS,
    PARSE_TYPES,
    SUPPORTED_OPERATORS,
)


class Parser(ExpressionParser):
    """A whole query: `parse()` reads the pipeline, each `parse_<operator>` one operator's clause."""

    # --- query ---------------------------------------------------------------------------------------
    def parse(self) -> Query:
        if self.at_word("let"):
            raise KqlUnsupported(
                "'let' statements are not supported by the lab's Resource Graph.",
                fragment="let",
                position=self.token.position,
            )
        query = self.parse_pipeline(top_level=True)
        if self.token.kind != "eof":
            raise self.unexpected()
        return query

    def parse_pipeline(self, *, top_level: bool = False) -> Query:
        """`table | op ...`, or (top level only) `op | op ...` over ARG's default table."""
        start = self.token
        table: str | None = None
        operators: list[Operator] = []
        if start.kind == "ident" and self.operator_word() is not None and self.looks_like_operator():
            if not top_level:
                raise self.unexpected(expected="a table name")
            operators.append(self.parse_operator())
        elif start.kind == "ident":
            table = self.advance().value
        elif self.at("[") and self.peek().kind == "string":  # ['table name']
            self.advance()
            table = self.advance().value
            self.expect("]")
        else:
            raise self.unexpected(expected="a table name")
        while self.at("|"):
            self.advance()
            operators.append(self.parse_operator())
        return Query(table=table, table_position=start.position, operators=tuple(operators))

    def operator_word(self) -> str | None:
        """The operator name at the cursor, joining unspaced hyphenated ones (`project-away`)."""
        if self.token.kind != "ident":
            return None
        word = self.token.value
        ahead = 1
        while (
            self.peek(ahead).value == "-"
            and self.peek(ahead + 1).kind == "ident"
            and self.adjacent(self.peek(ahead - 1), self.peek(ahead))
            and self.adjacent(self.peek(ahead), self.peek(ahead + 1))
        ):
            word += "-" + self.peek(ahead + 1).value
            ahead += 2
        if word in SUPPORTED_OPERATORS or word in KNOWN_KQL_OPERATORS:
            return word
        return None

    def looks_like_operator(self) -> bool:
        """At the start of a query, `where x` is an operator but `where` alone could be a table."""
        return self.peek().kind != "eof" and self.peek().value != "|"

    def consume_operator_word(self) -> str:
        word = self.operator_word()
        assert word is not None
        for _ in range(word.count("-") * 2 + 1):
            self.advance()
        return word

    def parse_operator(self) -> Operator:
        token = self.token
        word = self.operator_word()
        if word is None:
            raise self.unexpected(expected="a query operator")
        if word in KNOWN_KQL_OPERATORS:
            raise KqlUnsupported(
                f"The operator '{word}' is not supported by the lab's Resource Graph.",
                fragment=word,
                position=token.position,
            )
        self.consume_operator_word()
        parsers: dict[str, Callable[[Position], Operator]] = {
            "where": self.parse_where,
            "filter": self.parse_where,
            "project": self.parse_project,
            "project-away": self.parse_project_away,
            "extend": self.parse_extend,
            "parse": self.parse_parse,
            "join": self.parse_join,
            "summarize": self.parse_summarize,
            "count": Count,
            "distinct": self.parse_distinct,
            "order": self.parse_sort,
            "sort": self.parse_sort,
            "take": self.parse_take,
            "limit": self.parse_take,
            "top": self.parse_top,
        }
        return parsers[word](token.position)

    # --- operators -----------------------------------------------------------------------------------
    def parse_where(self, position: Position) -> Where:
        return Where(self.parse_expr(), position)

    def parse_assignments(self, *, allow_bare: bool = True) -> tuple[Assignment, ...]:
        items = [self.parse_assignment(allow_bare=allow_bare)]
        while self.at(","):
            self.advance()
            items.append(self.parse_assignment(allow_bare=allow_bare))
        return tuple(items)

    def parse_assignment(self, *, allow_bare: bool = True) -> Assignment:
        token = self.token
        if self.multi_column_target():
            # `(a, b) = expr` assigns the columns of a multi-column expression: none in the subset.
            raise KqlUnsupported(
                "Assigning several columns at once is not supported by the lab's Resource Graph.",
                fragment="(",
                position=token.position,
            )
        name = self.assignment_target()
        if name is not None:
            return Assignment(name, self.parse_expr(), token.position)
        if not allow_bare:
            raise self.unexpected(expected="'name = expression'")
        return Assignment(None, self.parse_expr(), token.position)

    def multi_column_target(self) -> bool:
        """Whether `(name, name, ...) =` starts at the cursor."""
        if not (self.at("(") and self.token.kind == "punct"):
            return False
        ahead = 1
        while self.peek(ahead).kind == "ident" and self.peek(ahead + 1).value in (",", ")"):
            if self.peek(ahead + 1).value == ")":
                return self.peek(ahead + 2).value == "=" and self.peek(ahead + 2).kind == "punct"
            ahead += 2
        return False

    def assignment_target(self) -> str | None:
        """`name =` or `['name'] =` at the cursor (not `==`/`=~`): consume it and return the name."""
        if self.token.kind == "ident" and self.peek().value == "=" and self.peek().kind == "punct":
            name = self.advance().value
            self.advance()
            return name
        if (
            self.at("[")
            and self.peek().kind == "string"
            and self.peek(2).value == "]"
            and self.peek(3).value == "="
        ):
            self.advance()
            name = self.advance().value
            self.advance()
            self.advance()
            return name
        return None

    def parse_project(self, position: Position) -> Project:
        return Project(self.parse_assignments(), position)

    def parse_extend(self, position: Position) -> Extend:
        return Extend(self.parse_assignments(), position)

    def parse_column_name(self) -> str:
        if self.at("[") and self.peek().kind == "string":
            self.advance()
            name = self.advance().value
            self.expect("]")
            return name
        return self.expect_ident("a column name").value

    def parse_project_away(self, position: Position) -> ProjectAway:
        patterns = [self.parse_name_pattern()]
        while self.at(","):
            self.advance()
            patterns.append(self.parse_name_pattern())
        return ProjectAway(tuple(patterns), position)

    def parse_name_pattern(self) -> str:
        """A column name, possibly with `*` wildcards written against it (`tag*`, `*Id`)."""
        parts: list[str] = []
        previous: Token | None = None
        while (self.token.kind == "ident" or self.at("*")) and (
            previous is None or self.adjacent(previous, self.token)
        ):
            previous = self.advance()
            parts.append(previous.value)
        if not parts:
            return self.parse_column_name()
        return "".join(parts)

    def parse_parse(self, position: Position) -> Parse:
        if self.at_word("kind"):
            self.advance()
            self.expect("=")
            kind = self.expect_ident("a parse kind")
            if kind.value != "simple":
                raise KqlUnsupported(
                    f"parse kind={kind.value} is not supported by the lab's Resource Graph (only simple).",
                    fragment=kind.value,
                    position=kind.position,
                )
        source = self.parse_expr()
        if not self.at_word("with"):
            raise self.unexpected(expected="'with'")
        self.advance()
        pattern: list[ParsePart] = []
        while self.token.value not in CLAUSE_ENDS or self.token.kind == "string":
            if self.at(","):
                self.advance()
                continue
            pattern.append(self.parse_pattern_part(pattern[-1] if pattern else None))
        if not any(isinstance(part, ParseCapture) for part in pattern):
            raise self.unexpected(expected="a column name in the parse pattern")
        return Parse(source, tuple(pattern), position)

    def parse_pattern_part(self, previous: ParsePart | None) -> ParsePart:
        """One part of a simple parse pattern: `*`, a string constant, or `column[:type]`."""
        token = self.token
        if self.at("*"):
            self.advance()
            if isinstance(previous, ParseCapture) and previous.type == "string":
                # parse-operator.md: "The `*` can't be used after a `string` type column."
                raise KqlSyntaxError(
                    "In a parse pattern, '*' cannot follow a string column.",
                    fragment="*",
                    position=token.position,
                )
            return "*"
        if token.kind == "string":
            value = self.advance().value
            while self.token.kind == "string":  # adjacent literals concatenate
                value += self.advance().value
            return value
        if token.kind != "ident" and not self.at("["):
            raise self.unexpected(expected="a parse pattern")
        name = self.parse_column_name()
        column_type = "string"
        if self.at(":"):
            self.advance()
            type_token = self.expect_ident("a type")
            if type_token.value not in PARSE_TYPES:
                raise KqlUnsupported(
                    f"parse captures of type '{type_token.value}' are not supported by the lab.",
                    fragment=type_token.value,
                    position=type_token.position,
                )
            column_type = type_token.value
        return ParseCapture(name, column_type, token.position)

    def parse_join(self, position: Position) -> Join:
        kind: JoinKind = "innerunique"  # join-operator.md: the default flavour
        while self.token.kind == "ident" and self.peek().value in ("=", "."):
            word = self.token
            if word.value == "kind":
                self.advance()
                self.expect("=")
                flavour = self.expect_ident("a join kind")
                if flavour.value in JOIN_KINDS:
                    kind = flavour.value
                elif flavour.value in KNOWN_JOIN_KINDS:
                    raise KqlUnsupported(
                        f"join kind={flavour.value} is not supported (Resource Graph supports "
                        "innerunique, inner and leftouter).",
                        fragment=flavour.value,
                        position=flavour.position,
                    )
                else:
                    raise self.unexpected(expected="a join kind", at_token=flavour)
            elif word.value == "hint":
                # ARG: "Custom join strategies, such as broadcast join, aren't allowed."
                raise KqlUnsupported(
                    "Join hints are not supported by Resource Graph.", fragment="hint", position=word.position
                )
            else:
                break
        if self.at("("):
            self.advance()
            right = self.parse_pipeline()
            self.expect(")")
        else:
            table = self.token
            right = Query(
                table=self.expect_ident("a table or '('").value, table_position=table.position, operators=()
            )
        if not self.at_word("on"):
            raise self.unexpected(expected="'on'")
        self.advance()
        conditions = [self.parse_join_condition()]
        while self.at(",") or self.at_word("and"):
            self.advance()
            conditions.append(self.parse_join_condition())
        return Join(kind, right, tuple(conditions), position)

    def parse_join_condition(self) -> JoinCondition:
        token = self.token
        if token.kind == "ident" and token.value in ("$left", "$right"):
            first_side, first = self.parse_side_column()
            self.expect("==")
            second_side, second = self.parse_side_column()
            if first_side == second_side:
                raise KqlSemanticError(
                    "A join condition must compare a $left column with a $right column.",
                    fragment=token.text,
                    position=token.position,
                )
            left, right = (first, second) if first_side == "$left" else (second, first)
            return JoinCondition(left, right, token.position)
        name = self.parse_column_name()
        return JoinCondition(name, name, token.position)

    def parse_side_column(self) -> tuple[str, str]:
        side = self.expect_ident("$left or $right")
        if side.value not in ("$left", "$right"):
            raise self.unexpected(expected="$left or $right", at_token=side)
        self.expect(".")
        return side.value, self.parse_column_name()

    def parse_summarize(self, position: Position) -> Summarize:
        aggregates: list[Aggregate] = []
        if not self.at_word("by"):
            aggregates.append(self.parse_aggregate())
            while self.at(","):
                self.advance()
                aggregates.append(self.parse_aggregate())
        by: tuple[Assignment, ...] = ()
        if self.at_word("by"):
            self.advance()
            by = self.parse_assignments()
        if not aggregates and not by:
            raise self.unexpected(expected="an aggregation or 'by'")
        return Summarize(tuple(aggregates), by, position)

    def parse_aggregate(self) -> Aggregate:
        token = self.token
        name = self.assignment_target()
        function = self.expect_ident("an aggregation function")
        if not self.at("("):
            raise self.unexpected(expected="'('")
        if function.value != "count":
            raise KqlUnsupported(
                f"The aggregation '{function.value}' is not supported by the lab (only count()).",
                fragment=function.value,
                position=function.position,
            )
        self.advance()
        if not self.at(")"):
            raise KqlUnsupported(
                "count() takes no argument in the lab's Resource Graph.",
                fragment=self.token.text,
                position=self.token.position,
            )
        self.advance()
        return Aggregate(name, "count", token.position)

    def parse_distinct(self, position: Position) -> Distinct:
        if self.at("*"):
            self.advance()
            return Distinct(("*",), position)
        columns = [self.parse_column_name()]
        while self.at(","):
            self.advance()
            columns.append(self.parse_column_name())
        return Distinct(tuple(columns), position)

    def parse_sort(self, position: Position) -> Sort:
        if not self.at_word("by"):
            raise self.unexpected(expected="'by'")
        self.advance()
        keys = [self.parse_sort_key()]
        while self.at(","):
            self.advance()
            keys.append(self.parse_sort_key())
        return Sort(tuple(keys), position)

    def parse_sort_key(self) -> SortKey:
        token = self.token
        expr = self.parse_expr()
        descending = True  # sort-operator.md: "Default is desc"
        if self.at_word("asc") or self.at_word("desc"):
            descending = self.advance().value == "desc"
        nulls_first = not descending  # "Default for asc is nulls first. Default for desc is nulls last."
        if self.at_word("nulls"):
            self.advance()
            where = self.expect_ident("'first' or 'last'")
            if where.value not in ("first", "last"):
                raise self.unexpected(expected="'first' or 'last'", at_token=where)
            nulls_first = where.value == "first"
        return SortKey(expr, descending, nulls_first, token.position)

    def parse_count_literal(self) -> int:
        token = self.token
        if token.kind != "long":
            raise self.unexpected(expected="a number of rows")
        self.advance()
        return int(token.value)

    def parse_take(self, position: Position) -> Take:
        return Take(self.parse_count_literal(), position)

    def parse_top(self, position: Position) -> Top:
        count = self.parse_count_literal()
        if not self.at_word("by"):
            raise self.unexpected(expected="'by'")
        self.advance()
        return Top(count, self.parse_sort_key(), position)


def parse_query(text: str) -> Query:
    """Parse one ARG query; `KqlError` subclasses say why ARG would refuse it."""
    if not text.strip():
        raise KqlSyntaxError("The query is empty.", fragment="<EOF>", position=Position(1, 0))
    return Parser(text).parse()
