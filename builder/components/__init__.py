"""The cluster's components, one module each; builder.manifests.registry finds them here.

Each module defines `COMPONENT`, an instance of a builder.cluster.component.Component
subclass. Adding a component is a module here, a template folder under
cloud-init/manifests/ and its images in images/upstream.yaml.
"""
