"""Request bodies the HTTP server accepts (pydantic models; unknown keys are refused) and their parsing.

``parse_json`` decodes a body with a nesting limit; ``validate`` turns a pydantic error into one line that
names the JSON key (``prompts[2].text: ...``).
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from ..errors import UnirouterError

MAX_DEPTH = 32  # nesting of JSON objects and arrays in a request body
MAX_PROMPTS = 10_000  # prompts per /route request
MAX_ID = 256  # characters of a prompt_id

Text = Annotated[str, Field(min_length=1)]
Name = Annotated[str, Field(min_length=1, max_length=1000)]


class BadRequest(UnirouterError):
    """A request body that is not valid JSON or does not fit the schema (HTTP 400)."""


class RoutingOptions(BaseModel):
    """How to choose an LLM: at most one of lambda / mean_cost / min_quality, an optional hard cap
    max_cost per prompt, an optional pool. Absent values take the server's defaults."""

    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False, populate_by_name=False)

    lambda_: float | None = Field(None, alias="lambda", ge=0)
    mean_cost: float | None = Field(None, gt=0)
    min_quality: float | None = Field(None, ge=0, le=1)
    max_cost: float | None = Field(None, gt=0)
    pool: list[Name] | None = Field(None, min_length=1)

    @model_validator(mode="after")
    def _one_rule(self) -> RoutingOptions:
        given = [k for k, v in (("lambda", self.lambda_), ("mean_cost", self.mean_cost),
                                ("min_quality", self.min_quality)) if v is not None]
        if len(given) > 1:
            raise ValueError(f"give at most one of 'lambda', 'mean_cost', 'min_quality' (got {', '.join(given)})")
        if self.pool is not None and len(set(self.pool)) != len(self.pool):
            raise ValueError("'pool' lists an LLM twice")
        return self

    def choice(self, defaults: dict[str, Any]) -> dict[str, Any]:
        """Keyword arguments of ``DeployedRouter.route``: the request's lambda rule, else the default one;
        the request's cap and pool, else the defaults."""
        rule = {"lam": self.lambda_, "mean_cost": self.mean_cost, "min_quality": self.min_quality}
        if all(v is None for v in rule.values()):
            rule = {k: defaults.get(k) for k in rule}
        return {**rule, "max_cost": self.max_cost if self.max_cost is not None else defaults.get("max_cost"),
                "pool": self.pool if self.pool is not None else defaults.get("pool")}


class Prompt(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    prompt_id: Annotated[str, Field(min_length=1, max_length=MAX_ID)]
    text: Text

    @field_validator("text")
    @classmethod
    def _not_blank(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("is blank (expected a prompt text)")
        return v


class RouteRequest(RoutingOptions):
    """``POST /route``: ``prompts`` (a list of {prompt_id, text}) or ``texts`` (a list of strings)."""

    prompts: list[Prompt] | None = Field(None, min_length=1, max_length=MAX_PROMPTS)
    texts: list[Text] | None = Field(None, min_length=1, max_length=MAX_PROMPTS)

    @model_validator(mode="after")
    def _prompts(self) -> RouteRequest:
        if (self.prompts is None) == (self.texts is None):
            raise ValueError("give exactly one of 'prompts' (a list of {prompt_id, text}) or 'texts' "
                             "(a list of strings)")
        if self.texts is not None and (blank := next((i for i, t in enumerate(self.texts) if not t.strip()), None)
                                       ) is not None:
            raise ValueError(f"texts[{blank}] is blank (expected a prompt text)")
        if self.prompts is not None:
            seen: set[str] = set()
            for i, p in enumerate(self.prompts):
                if p.prompt_id in seen:
                    raise ValueError(f"prompts[{i}].prompt_id {p.prompt_id!r} is a duplicate (each prompt once)")
                seen.add(p.prompt_id)
        return self

    def ids_texts(self) -> tuple[list[str], list[str]]:
        if self.prompts is not None:
            return [p.prompt_id for p in self.prompts], [p.text for p in self.prompts]
        assert self.texts is not None
        return [str(i) for i in range(len(self.texts))], list(self.texts)


class Message(BaseModel):
    """One chat message; content is a string or a list of parts (the text parts are routed)."""

    model_config = ConfigDict(extra="allow")

    role: str
    content: str | list[dict[str, Any]] | None = None

    def text(self) -> str:
        if isinstance(self.content, str):
            return self.content
        return "\n".join(str(p.get("text", "")) for p in self.content or [] if p.get("type") == "text")


class ChatRequest(BaseModel):
    """``POST /v1/chat/completions``: an OpenAI chat request (other keys are forwarded untouched) with
    ``model`` "auto" (route) or an LLM of the router (no routing); ``unirouter`` holds routing options and
    is not forwarded."""

    model_config = ConfigDict(extra="allow")

    model: Name
    messages: list[Message] = Field(min_length=1)
    stream: bool = False
    unirouter: RoutingOptions | None = None

    def prompt(self) -> str:
        """The text of the last user message."""
        for m in reversed(self.messages):
            if m.role == "user" and m.text().strip():
                return m.text()
        raise ValueError("'messages' has no user message with text (the router routes the last one)")


Mode = Literal["auto", "direct"]


def _depth_ok(obj: Any) -> bool:
    stack = [(obj, 1)]
    while stack:
        o, d = stack.pop()
        if isinstance(o, dict | list):
            if d > MAX_DEPTH:
                return False
            stack.extend((v, d + 1) for v in (o.values() if isinstance(o, dict) else o))
    return True


def parse_json(body: bytes) -> Any:
    """Decode a UTF-8 JSON body; refuse invalid JSON, numbers Python cannot hold and deep nesting."""
    if not body.strip():
        raise BadRequest("empty body (expected a JSON object)")
    try:
        obj = json.loads(body.decode("utf-8"))
    except UnicodeDecodeError as e:
        raise BadRequest(f"body is not UTF-8 (byte {e.start})") from None
    except json.JSONDecodeError as e:
        raise BadRequest(f"body is not valid JSON ({e.msg} at line {e.lineno} column {e.colno})") from None
    except RecursionError:
        raise BadRequest(f"body nests JSON deeper than {MAX_DEPTH} levels") from None
    except ValueError as e:  # an integer of more digits than Python converts
        raise BadRequest(f"body holds a number Python cannot read ({' '.join(str(e).split())[:80]})") from None
    if not _depth_ok(obj):
        raise BadRequest(f"body nests JSON deeper than {MAX_DEPTH} levels")
    return obj


def _where(loc: tuple) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


def validate(model: type[BaseModel], obj: Any) -> Any:
    """``model.model_validate(obj)`` with the first error as one line naming the JSON key."""
    if not isinstance(obj, dict):
        raise BadRequest(f"expected a JSON object, got {type(obj).__name__}")
    try:
        return model.model_validate(obj)
    except ValidationError as e:
        errs = e.errors(include_url=False)
        err = next((x for x in errs if x["type"] == "extra_forbidden"), errs[0])  # a misspelt key first
        loc = tuple(p for p in err["loc"] if p not in ("function-after",))
        key = _where(loc)
        kind, msg = err["type"], err["msg"]
        if kind == "extra_forbidden":
            raise BadRequest(f"'{key}': unknown key (expected {_known(model, loc)})") from None
        if kind == "missing":
            raise BadRequest(f"'{key}': required key is missing") from None
        if kind == "value_error":
            msg = msg.removeprefix("Value error, ")
            raise BadRequest(f"'{key}': {msg}" if key else msg) from None
        if kind in ("float_type", "float_parsing", "finite_number"):
            msg = "expected a finite number (at most 308 digits)"
        elif kind == "bool_type":
            msg = "expected true or false"
        elif kind in ("string_type", "list_type", "dict_type", "model_type"):
            msg = f"expected {kind.removesuffix('_type').replace('dict', 'object').replace('model', 'object')}"
        raise BadRequest(f"'{key}': {msg[0].lower() + msg[1:]}") from None


def _known(model: type[BaseModel], loc: tuple) -> str:
    """The key names the object holding ``loc[-1]`` accepts."""
    fields = model.model_fields
    for part in loc[:-1]:
        if isinstance(part, int):
            continue
        f = fields.get(part)
        inner = _model_of(f.annotation) if f is not None else None
        if inner is None:
            break
        fields = inner.model_fields
    return ", ".join(f.alias or n for n, f in fields.items())


def _model_of(annotation: Any) -> type[BaseModel] | None:
    from typing import get_args

    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for a in get_args(annotation):
        if (m := _model_of(a)) is not None:
            return m
    return None
