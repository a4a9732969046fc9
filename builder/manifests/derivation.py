"""dist/manifests/: everything k3s applies from /var/lib/rancher/k3s/server/manifests.

The manifests are what the registered cluster components (builder/components/) declare:
their templates under cloud-init/manifests/<component>/ and, for Open edX, Tutor's
render. Every file is parsed back and re-written by the deterministic YAML writer, after
checks that no image is named by tag and that no secret sits outside a *-secrets.yaml file.
Our own images that the components run are dependencies: their digests are read from the
built layouts (builder/images/reference.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import yaml

from builder.cluster.component import BACKUP_IMAGE, BACKUP_PATH, Component, Rendering
from builder.cluster.k8s import SERVER_SELECTOR, Document, container_security, pod_security
from builder.det.yamlfmt import FAST_LOADER, dump_documents
from builder.errors import MeshseedError
from builder.images.reference import built_reference, holds_stand_in, resolve, stand_in
from builder.manifests import registry
from builder.render.manifest_rules import SECRET_SUFFIX, check_manifest
from builder.render.templates import environment, render
from builder.resources import manifest_templates
from builder.secrets import SecretDeriver
from builder.site import Site
from builder.store.derivation import BuildContext, Derivation

__all__ = ["BACKUP_IMAGE", "BACKUP_PATH", "manifests_derivation", "missing_images"]


def missing_images(images: Mapping[str, str]) -> list[str]:
    return [name for name in registry.required_images() if name not in images]


def manifests_inputs(
    site: Site, overlays: Mapping[str, str], images: Mapping[str, str], gathered: registry.Gathered
) -> dict[str, Any]:
    """Everything public the manifests depend on; secrets are added at build time."""
    used = {name for c in gathered.components for name in (*c.images, *c.optional_images)}
    return {
        "cluster": site.cluster,
        "domain": site.domain,
        "lms_host": site.lms_host,
        "studio_host": site.studio_host,
        "images": {name: reference for name, reference in images.items() if name in used},
        "nodes": [
            {"name": node.name, "role": node.role.value, "overlay": overlays[node.name]}
            for node in site.nodes
        ],
        "servers": [node.name for node in site.servers],
        "browser_hosts": list(site.browser_hosts),
        **registry.public_inputs(gathered),
    }


def manifests_derivation(
    site: Site,
    *,
    overlays: Mapping[str, str],
    images: Mapping[str, str],
    deriver: SecretDeriver,
    tutor_images: Mapping[str, Mapping[str, str]] | None = None,
    own_images: Mapping[str, Derivation] | None = None,
) -> Derivation:
    """`own_images`: the derivations of our images this build makes, by image name."""
    built = own_images or {}
    gathered = registry.gather(site, overlays, images, tutor_images, own_stand_ins(built))
    used = sorted({name for c in gathered.components for name in c.own_images if name in built})
    return Derivation(
        name="manifests",
        build=build_manifests,
        inputs={
            **manifests_inputs(site, overlays, images, gathered),
            # Stand-in -> the derivation whose output holds the image, and its digest.
            "built_images": {stand_in(name): built[name].name for name in used},
        },
        deps=tuple(built[name] for name in used),
        sources=gathered.template_sources(),
        secrets=deriver,
        dist_path="manifests",
    )


def own_stand_ins(built: Mapping[str, Derivation]) -> dict[str, str]:
    """Our images as the plan names them, before they are built."""
    return {name: stand_in(name) for name in sorted(built)}


def _origin(component: Component, template: str) -> str:
    """How the user knows a template: cloud-init/manifests/... for the project's own."""
    path = component.template_dir() / template
    root = manifest_templates()
    return f"cloud-init/manifests/{path.relative_to(root)}" if path.is_relative_to(root) else str(path)


def build_manifests(ctx: BuildContext) -> None:
    references = {stand: built_reference(ctx.dep(dep)) for stand, dep in ctx.inputs["built_images"].items()}
    inputs = resolve({key: value for key, value in ctx.inputs.items() if key != "built_images"}, references)
    components = registry.by_name(inputs["components"])
    env = environment(tuple((name, ctx.source(name).decode()) for name in sorted(ctx.derivation.sources)))
    secrets = {
        name: ctx.secrets.derive_recipe(spec.purpose, spec.recipe).text
        for component in components
        for name, spec in component.secrets.items()
    }
    # The templates build security contexts with the same helpers as render/openedx.py.
    context: dict[str, Any] = {
        **inputs,
        "server_selector": SERVER_SELECTOR,
        "pod_security": pod_security,
        "container_security": container_security,
    }
    files: dict[str, str] = {}
    for component in components:
        for name, template in component.files.items():
            files[name] = render(
                env,
                f"{component.name}/{template}",
                {**context, "files": files},
                origin=_origin(component, template),
            )
    for component in components:
        digests = component.digests(files, inputs)
        if digests:
            context[component.context_key] = {**inputs[component.context_key], **digests}
    rendering = Rendering(inputs, files, secrets, ctx.secrets)
    documents: dict[str, list[Document]] = {}
    for component in components:
        made: dict[str, list[Document]] = {}
        for name in component.manifests:
            template = f"{name}.yaml.j2"
            origin = _origin(component, template)
            text = render(
                env,
                f"{component.name}/{template}",
                {**context, "files": files, "secrets": secrets},
                origin=origin,
            )
            made[name] = _parse(text, origin)
        made.update(component.documents(rendering))
        for name in made:
            if name in documents:
                raise MeshseedError(
                    f"manifests/{name}.yaml: made by two components, the second is {component.name}"
                )
        documents.update(made)
    secret_texts = sorted({*secrets.values(), *rendering.secret_values})
    texts = {name: dump_documents(documents[name]) for name in sorted(documents)}
    for name, text in texts.items():
        if holds_stand_in(text):
            raise MeshseedError(f"manifests/{name}.yaml: names an image of ours by a stand-in, not a digest")
        check_manifest(name, documents[name], text, secret_texts)
    for component in components:
        component.check(rendering, texts)
    for name, text in texts.items():
        ctx.write(f"{name}.yaml", text, private=name.endswith(SECRET_SUFFIX))


def _parse(text: str, origin: str) -> list[Document]:
    try:
        return [document for document in yaml.load_all(text, Loader=FAST_LOADER) if document]
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise MeshseedError(f"{origin} rendered invalid YAML{where}") from None
