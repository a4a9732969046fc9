"""The JSON Schema of site.yaml, generated from the site model, so editors can check the file."""

from __future__ import annotations

from builder.site.model import Site
from builder.typed_yaml.scalars import JsonSchema
from builder.typed_yaml.schema import document_schema


def site_schema() -> JsonSchema:
    return document_schema(Site, schema_id="https://meshseed.invalid/schema/site.json", title="meshseed site")
