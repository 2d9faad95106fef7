"""JSON schemas for OpenAI's structured outputs (`response_format` with `strict: true`)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel


def strict_json_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The model's JSON schema in the subset strict mode accepts: references inlined, every
    object closed (`additionalProperties: false`) with all its properties required, no
    titles or defaults."""
    schema = model.model_json_schema(by_alias=True)
    definitions = schema.pop("$defs", {})
    return _strict(schema, definitions)


def _strict(node: dict[str, Any], definitions: dict[str, Any]) -> dict[str, Any]:
    if ref := node.get("$ref"):
        return _strict(definitions[ref.rsplit("/", 1)[-1]], definitions)
    out = {key: value for key, value in node.items() if key not in ("title", "default")}
    if "properties" in out:
        out["properties"] = {name: _strict(sub, definitions) for name, sub in out["properties"].items()}
        out["required"] = list(out["properties"])
        out["additionalProperties"] = False
    if "items" in out:
        out["items"] = _strict(out["items"], definitions)
    if "anyOf" in out:
        out["anyOf"] = [_strict(sub, definitions) for sub in out["anyOf"]]
    return out
