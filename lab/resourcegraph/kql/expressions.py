"""The scalar half of the parser: a token cursor and the expression grammar (precedence climbing).

`or` binds loosest, then `and`, then one comparison or string operator (KQL does not chain them), then
postfix member access (`a.b`, `a['b']`, `a[0]`) over primaries (literals, columns, calls, parentheses).
The tabular grammar (`lab.resourcegraph.kql.parser.Parser`) extends this class.
"""

from __future__ import annotations

from lab.resourcegraph.kql.lexer import (
    KqlSyntaxError,
    KqlUnsupported,
    Position,
    Token,
    TokenKind,
    tokenize,
)
from lab.resourcegraph.kql.syntax import Binary, Call, ColumnRef, Constant, Expr, InList, Member
from lab.resourcegraph.kql.vocabulary import (
    ARITHMETIC,
    COMPARISONS,
    STRING_OPERATORS,
    TYPED_LITERALS,
    UNSUPPORTED_STRING_OPERATORS,
)


class ExpressionParser:
    """Recursive descent over the token list; each method consumes one grammar rule."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = tokenize(text)
        self.index = 0

    # --- token helpers ------------------------------------------------------------------------------
    @property
    def token(self) -> Token:
        return self.tokens[self.index]

    def peek(self, ahead: int = 1) -> Token:
        return self.tokens[min(self.index + ahead, len(self.tokens) - 1)]

    def advance(self) -> Token:
        token = self.token
        if token.kind != "eof":
            self.index += 1
        return token

    def at(self, value: str, kind: TokenKind | None = None) -> bool:
        token = self.token
        return token.value == value and token.kind in ((kind,) if kind else ("ident", "punct"))

    def at_word(self, value: str) -> bool:
        return self.token.kind == "ident" and self.token.value == value

    def expect(self, value: str) -> Token:
        if not self.at(value):
            raise self.unexpected(expected=value)
        return self.advance()

    def expect_ident(self, what: str = "a name") -> Token:
        if self.token.kind != "ident":
            raise self.unexpected(expected=what)
        return self.advance()

    def adjacent(self, first: Token, second: Token) -> bool:
        return first.end == second.start

    def unexpected(self, *, expected: str | None = None, at_token: Token | None = None) -> KqlSyntaxError:
        bad = at_token or self.token
        wanted = f" Expected {expected}." if expected else ""
        return KqlSyntaxError(
            f"Unexpected token '{bad.text}' at line {bad.position.line}, position "
            f"{bad.position.column}.{wanted}",
            fragment=bad.text,
            position=bad.position,
        )

    # --- scalar expressions --------------------------------------------------------------------------
    def parse_expr(self) -> Expr:
        return self.parse_or()

    def parse_or(self) -> Expr:
        left = self.parse_and()
        while self.at_word("or"):
            token = self.advance()
            left = Binary("or", left, self.parse_and(), token.position)
        return left

    def parse_and(self) -> Expr:
        left = self.parse_comparison()
        while self.at_word("and"):
            token = self.advance()
            left = Binary("and", left, self.parse_comparison(), token.position)
        return left

    def parse_comparison(self) -> Expr:
        left = self.parse_postfix()
        token = self.token
        if token.kind == "punct" and token.value in ARITHMETIC:
            raise KqlUnsupported(
                f"Arithmetic ('{token.value}') is not supported by the lab's Resource Graph.",
                fragment=token.value,
                position=token.position,
            )
        operator = self.comparison_operator()
        if operator is None:
            return left
        if operator in ("in", "!in", "in~", "!in~"):
            self.expect("(")
            items = [self.parse_expr()]
            while self.at(","):
                self.advance()
                items.append(self.parse_expr())
            self.expect(")")
            return InList(
                left, tuple(items), operator.startswith("!"), operator.endswith("~"), token.position
            )
        return Binary(operator, left, self.parse_postfix(), token.position)

    def comparison_operator(self) -> str | None:
        """The comparison or string operator at the cursor (consumed), or None."""
        token = self.token
        if token.kind == "punct" and token.value in COMPARISONS:
            self.advance()
            return token.value
        negated = False
        word = token
        if (
            token.kind == "punct"
            and token.value == "!"
            and self.peek().kind == "ident"
            and self.adjacent(token, self.peek())
        ):
            negated, word = True, self.peek()
        if word.kind != "ident":
            return None
        name = word.value
        if name in UNSUPPORTED_STRING_OPERATORS:
            raise KqlUnsupported(
                f"The operator '{'!' if negated else ''}{name}' is not supported by the lab.",
                fragment=("!" if negated else "") + name,
                position=token.position,
            )
        if name == "in":
            tilde = self.peek(2 if negated else 1)
            case_insensitive = tilde.value == "~" and self.adjacent(word, tilde)
            for _ in range((2 if negated else 1) + (1 if case_insensitive else 0)):
                self.advance()
            return ("!" if negated else "") + "in" + ("~" if case_insensitive else "")
        if name in STRING_OPERATORS:
            self.advance()
            if negated:
                self.advance()
            return ("!" if negated else "") + name
        return None

    def parse_postfix(self) -> Expr:
        expr = self.parse_primary()
        while True:
            token = self.token
            if self.at(".") and token.kind == "punct":
                self.advance()
                if self.at("["):  # properties.['odata.type'] (ARG's escape for dotted names)
                    expr = Member(expr, self.parse_bracket_key(), token.position)
                else:
                    name = self.expect_ident("a property name")
                    expr = Member(expr, name.value, name.position)
            elif self.at("[") and token.kind == "punct":
                expr = Member(expr, self.parse_bracket_key(), token.position)
            else:
                return expr

    def parse_bracket_key(self) -> str | int:
        self.expect("[")
        token = self.token
        if token.kind == "string":
            key: str | int = self.advance().value
        elif token.kind == "long":
            key = int(self.advance().value)
        elif self.at("-") and self.peek().kind == "long":
            self.advance()
            key = -int(self.advance().value)
        else:
            raise self.unexpected(expected="a property name or an array index")
        self.expect("]")
        return key

    def parse_primary(self) -> Expr:
        token = self.token
        if token.kind == "string":
            value = self.advance().value
            while self.token.kind == "string":  # string.md: adjacent literals are concatenated
                value += self.advance().value
            return Constant(value, "string", token.position)
        if token.kind in ("long", "real"):
            self.advance()
            return self.number(token, negative=False)
        if self.at("-") and token.kind == "punct" and self.peek().kind in ("long", "real"):
            self.advance()
            return self.number(self.advance(), negative=True, position=token.position)
        if self.at("(") and token.kind == "punct":
            self.advance()
            inner = self.parse_expr()
            self.expect(")")
            return inner
        if self.at("[") and token.kind == "punct" and self.peek().kind == "string":
            self.advance()
            name = self.advance().value
            self.expect("]")
            return ColumnRef(name, token.position)
        if token.kind == "ident":
            return self.parse_name_or_call()
        raise self.unexpected(expected="an expression")

    def parse_name_or_call(self) -> Expr:
        """An identifier: `true`/`false`, a function call, or a column."""
        token = self.advance()
        if token.value in ("true", "false") and not self.at("("):
            return Constant(token.value == "true", "bool", token.position)
        if token.value in ("$left", "$right"):
            raise self.unexpected(at_token=token)
        if not self.at("("):
            return ColumnRef(token.value, token.position)
        if token.value in TYPED_LITERALS:
            # dynamic([...]), datetime(...), int(null): literal syntaxes outside the subset.
            raise KqlUnsupported(
                f"'{token.value}(...)' literals are not supported by the lab's Resource Graph.",
                fragment=token.value,
                position=token.position,
            )
        self.advance()
        args: list[Expr] = []
        if not self.at(")"):
            args.append(self.parse_expr())
            while self.at(","):
                self.advance()
                args.append(self.parse_expr())
        self.expect(")")
        return Call(token.value, tuple(args), token.position)

    @staticmethod
    def number(token: Token, *, negative: bool, position: Position | None = None) -> Constant:
        sign = -1 if negative else 1
        where = position or token.position
        if token.kind == "long":
            return Constant(sign * int(token.value), "long", where)
        return Constant(sign * float(token.value), "real", where)
