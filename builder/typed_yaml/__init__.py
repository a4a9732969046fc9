"""Typed YAML documents: a frozen-dataclass model drives the loader and the JSON Schema.

A model declares its fields once (type hints, `Scalar` annotations and field metadata);
`document.decode_document` reads a file into it, reporting every problem with its line and
key path, and `schema.document_schema` describes the same model for editors. The site,
images/upstream.yaml and each image.yaml are read this way; nothing here knows about them.
"""
