"""The OpenAPI 3 document, built from the routes as they are declared (one ``@endpoint`` each)."""
from __future__ import annotations

import re
from dataclasses import dataclass

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from miniapp_api import schemas

PREFIX = "/api/v1"


@dataclass(frozen=True)
class Endpoint:
    method: str
    rule: str                      # Flask rule, e.g. /accounts/<int:account_id>
    summary: str
    body: type[BaseModel] | None
    query: type[BaseModel] | None
    response: type[BaseModel] | None
    auth: bool
    errors: tuple[int, ...]
    media: str = "application/json"


ENDPOINTS: list[Endpoint] = []


def endpoint(bp, method: str, rule: str, *, summary: str, body=None, query=None, response=None, auth=True,
             errors=(400, 401, 404), media: str = "application/json"):
    """Register a view on ``bp`` and describe it in the OpenAPI document."""
    def register(fn):
        ENDPOINTS.append(Endpoint(method.upper(), rule, summary, body, query, response, auth, tuple(errors), media))
        bp.add_url_rule(rule, endpoint=fn.__name__, view_func=fn, methods=[method.upper()])
        return fn
    return register


def _path(rule: str) -> str:
    return PREFIX + re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule)


def build() -> dict:
    models = {schemas.Error}
    for e in ENDPOINTS:
        models.update(m for m in (e.body, e.response) if m is not None)
    _, defs = models_json_schema([(m, "validation") for m in sorted(models, key=lambda m: m.__name__)],
                                 ref_template="#/components/schemas/{model}")
    components = defs.get("$defs", {})
    paths: dict[str, dict] = {}
    for e in ENDPOINTS:
        op: dict = {"summary": e.summary, "operationId": f"{e.method.lower()}_{e.rule.strip('/').replace('/', '_')}"
                    .replace("<", "").replace(">", "").replace(":", "_"), "responses": {}}
        params = []
        for kind, name in re.findall(r"<(?:(\w+):)?(\w+)>", e.rule):
            schema = ({"type": "integer", "minimum": 1, "maximum": schemas.MAX_ID} if kind == "int"
                      else {"type": "string", "pattern": "^[A-Za-z0-9]{1,40}$"})
            params.append({"name": name, "in": "path", "required": True, "schema": schema})
        if e.query is not None:
            qs = e.query.model_json_schema(ref_template="#/components/schemas/{model}")
            for name, prop in qs.get("properties", {}).items():
                params.append({"name": name, "in": "query", "required": name in qs.get("required", []),
                               "schema": {k: v for k, v in prop.items() if k != "title"}})
        if params:
            op["parameters"] = params
        if e.body is not None:
            op["requestBody"] = {"required": True, "content": {"application/json": {
                "schema": {"$ref": f"#/components/schemas/{e.body.__name__}"}}}}
        if e.response is not None:
            op["responses"]["200"] = {"description": "OK", "content": {"application/json": {
                "schema": {"$ref": f"#/components/schemas/{e.response.__name__}"}}}}
        else:
            op["responses"]["200"] = {"description": "OK", "content": {e.media: {"schema": {"type": "string",
                                                                                             "format": "binary"}}}}
        for status in sorted(set(e.errors) | ({401} if e.auth else set())):
            op["responses"][str(status)] = {"description": _DESCRIPTIONS.get(status, "error"), "content": {
                "application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
        if e.auth:
            op["security"] = [{"bearer": []}]
        paths.setdefault(_path(e.rule), {})[e.method.lower()] = op
    return {
        "openapi": "3.1.0",
        "info": {"title": "meterpay mini-program API", "version": "1",
                 "description": "Tenant self-service: bind a room, see balance and usage, recharge. "
                                "Errors are JSON {code, message}."},
        "servers": [{"url": "/"}],
        "paths": paths,
        "components": {"schemas": components,
                       "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
    }


_DESCRIPTIONS = {400: "invalid input", 401: "no or bad token", 403: "refused", 404: "not found (or not yours)",
                 409: "conflict", 502: "payment provider unreachable or refused", 503: "channel not configured"}
