"""Builds one concrete request per operation of the served OpenAPI document.

Parameters and JSON/multipart bodies are filled from their schemas, with values chosen by
name so they point at the victim tenant's data (``machine_id`` → acme's machine, ``*_id``
→ an acme memory id), which is what an intruder would try.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

SKIP_PATHS = re.compile(r"^/api/v1/(health|schema)(/|$)")
# Uploads whose OpenAPI entry may not describe the multipart body: (file field, file name,
# content type, form fields). "{audio}" content means the silent WAV.
KNOWN_UPLOADS: dict[tuple[str, str], tuple[str, str, str, tuple[str, ...]]] = {
    ("POST", "/api/v1/voice-notes"): ("audio", "note.wav", "audio/wav",
                                      ("machine_id", "target_id")),
    ("POST", "/api/v1/documents"): ("file", "manual.txt", "text/plain", ("kind", "machine_id")),
}


@dataclass
class Call:
    method: str
    path: str  # template, e.g. /api/v1/machines/{code}/briefing
    url: str  # filled
    params: dict[str, str] = field(default_factory=dict)
    json: Any = None
    files: dict[str, tuple[str, bytes, str]] | None = None
    data: dict[str, str] | None = None

    @property
    def key(self) -> str:
        return f"{self.method} {self.path}"

    def sent(self) -> str:
        """Everything this call sends, to tell an echo of the caller's input from a leak."""
        return repr((self.url, self.params, self.json, self.data,
                     [(n, f[0]) for n, f in (self.files or {}).items()]))


def operations(spec: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    out = []
    for path, ops in sorted(spec.get("paths", {}).items()):
        if not path.startswith("/api/") or SKIP_PATHS.match(path):
            continue
        for method, op in sorted(ops.items()):
            if method in {"get", "post", "put", "patch", "delete"}:
                out.append((method.upper(), path, op))
    return out


class Filler:
    """Values for parameters and bodies, by name, aimed at ``values`` (the victim's ids)."""

    def __init__(self, spec: dict[str, Any], values: dict[str, Any], audio: bytes) -> None:
        self.spec = spec
        self.values = values
        self.audio = audio

    def resolve(self, schema: dict[str, Any]) -> dict[str, Any]:
        seen = 0
        while "$ref" in schema and seen < 20:
            name = schema["$ref"].rsplit("/", 1)[-1]
            schema = self.spec.get("components", {}).get("schemas", {}).get(name, {})
            seen += 1
        return schema

    def value(self, name: str, schema: dict[str, Any], depth: int = 0) -> Any:
        schema = self.resolve(schema)
        for key in ("oneOf", "anyOf"):
            if key in schema:
                options = [self.resolve(s) for s in schema[key]]
                options = [s for s in options if s.get("type") != "null"] or options
                return self.value(name, options[0], depth)
        if "enum" in schema:
            return schema["enum"][0]
        if name in self.values:
            return self.values[name]
        kind = schema.get("type")
        if kind == "object" or "properties" in schema:
            if depth > 4:
                return {}
            props = schema.get("properties", {})
            return {k: self.value(k, v, depth + 1) for k, v in props.items()}
        if kind == "array":
            return [self.value(name, schema.get("items", {}), depth + 1)]
        if kind == "integer":
            return max(1, int(schema.get("minimum", 1)))
        if kind == "number":
            return 1.0
        if kind == "boolean":
            return False
        if schema.get("format") == "date-time" or name.endswith("_at") or name == "as_of":
            return "2025-01-01T00:00:00+00:00"
        if name.endswith("_id") or name == "id" or name == "code":
            return self.values.get("_any_id", "x")
        return "intruder probe text"

    def call(self, method: str, path: str, op: dict[str, Any]) -> Call:
        url = path
        params: dict[str, str] = {}
        for p in op.get("parameters", []):
            p = self.resolve(p)
            v = self.value(p["name"], p.get("schema", {}))
            if p.get("in") == "path":
                url = url.replace("{" + p["name"] + "}", str(v))
                url = re.sub(r"\{" + re.escape(p["name"]) + r":[^}]*\}", str(v), url)
            elif p.get("in") == "query" and (p.get("required") or p["name"] in self.values):
                params[p["name"]] = v if isinstance(v, str) else str(v)
        c = Call(method, path, url, params)
        content = op.get("requestBody", {}).get("content", {})
        if "application/json" in content:
            c.json = self.value("body", content["application/json"].get("schema", {}))
        elif "multipart/form-data" in content:
            schema = self.resolve(content["multipart/form-data"].get("schema", {}))
            c.files, c.data = {}, {}
            for k, s in schema.get("properties", {}).items():
                s = self.resolve(s)
                if s.get("format") == "binary" or s.get("contentMediaType") or k in {
                        "file", "audio", "upload"}:
                    c.files[k] = ("note.wav", self.audio, "audio/wav") if "audio" in path or \
                        "voice" in path else ("manual.txt", b"intruder manual E404", "text/plain")
                else:
                    v = self.value(k, s)
                    c.data[k] = v if isinstance(v, str) else str(v)
            if not c.files:
                c.files["file"] = ("manual.txt", b"intruder manual E404", "text/plain")
        elif (method, path) in KNOWN_UPLOADS:
            fld, fname, ctype, form = KNOWN_UPLOADS[(method, path)]
            content = self.audio if ctype.startswith("audio") else b"intruder manual E404: step 1"
            c.files = {fld: (fname, content, ctype)}
            c.data = {k: str(self.value(k, {"type": "string"})) for k in form}
        return c
