"""OCI images: references, the registry client, the blob store, layouts and air-gap bundles."""
