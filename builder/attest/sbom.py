"""An SPDX 2.3 document for an image: the image, the Debian packages in it with their
versions, and the project's own files with their checksums."""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from typing import Any
from urllib.parse import quote

from builder.attest.contents import ImageContents

PREDICATE_TYPE = "https://spdx.dev/Document"
NAMESPACE = "https://meshseed.dev/spdx"
NOASSERTION = "NOASSERTION"
_ID_UNSAFE = re.compile(r"[^A-Za-z0-9.-]")


def _spdx_id(kind: str, name: str) -> str:
    return f"SPDXRef-{kind}-{_ID_UNSAFE.sub('-', name)}"


def spdx_document(
    repository: str, digest: str, tag: str, contents: ImageContents, *, created: dt.datetime, tool: str
) -> dict[str, Any]:
    image_id = "SPDXRef-Image"
    packages: list[dict[str, Any]] = [
        {
            "SPDXID": image_id,
            "name": repository.rsplit("/", 1)[-1],
            "versionInfo": tag,
            "downloadLocation": NOASSERTION,
            "filesAnalyzed": False,
            "primaryPackagePurpose": "CONTAINER",
            "checksums": [{"algorithm": "SHA256", "checksumValue": digest.removeprefix("sha256:")}],
            "externalRefs": [
                {
                    "referenceCategory": "PACKAGE-MANAGER",
                    "referenceType": "purl",
                    "referenceLocator": f"pkg:oci/{quote(repository.rsplit('/', 1)[-1])}@{quote(digest)}"
                    f"?repository_url={quote(repository, safe='')}&tag={quote(tag)}",
                }
            ],
        }
    ]
    relationships = [
        {"spdxElementId": "SPDXRef-DOCUMENT", "relationshipType": "DESCRIBES", "relatedSpdxElement": image_id}
    ]
    for package in contents.packages:
        package_id = _spdx_id("deb", f"{package.name}-{package.architecture}")
        packages.append(
            {
                "SPDXID": package_id,
                "name": package.name,
                "versionInfo": package.version,
                "supplier": "Organization: Debian",
                "downloadLocation": NOASSERTION,
                "filesAnalyzed": False,
                "licenseConcluded": NOASSERTION,
                "licenseDeclared": NOASSERTION,
                "copyrightText": NOASSERTION,
                "externalRefs": [
                    {
                        "referenceCategory": "PACKAGE-MANAGER",
                        "referenceType": "purl",
                        "referenceLocator": f"pkg:deb/debian/{quote(package.name)}@{quote(package.version)}"
                        f"?arch={package.architecture}",
                    }
                ],
            }
        )
        relationships.append(
            {"spdxElementId": image_id, "relationshipType": "CONTAINS", "relatedSpdxElement": package_id}
        )
    # The project's own files form a package of their own: SPDX lets only a package whose
    # files were analyzed contain files, and the Debian packages' files are not listed.
    project_id = "SPDXRef-Project"
    sha1s = sorted(image_file.sha1 for image_file in contents.files)
    packages.append(
        {
            "SPDXID": project_id,
            "name": f"{repository.rsplit('/', 1)[-1]} project files",
            "versionInfo": tag,
            "downloadLocation": NOASSERTION,
            "filesAnalyzed": True,
            "packageVerificationCode": {
                "packageVerificationCodeValue": hashlib.sha1("".join(sha1s).encode()).hexdigest()
            },
            "licenseConcluded": NOASSERTION,
            "licenseDeclared": NOASSERTION,
            "copyrightText": NOASSERTION,
            "hasFiles": [f"SPDXRef-File-{number}" for number in range(len(contents.files))],
        }
    )
    relationships.append(
        {"spdxElementId": image_id, "relationshipType": "CONTAINS", "relatedSpdxElement": project_id}
    )
    files = []
    for number, image_file in enumerate(contents.files):
        files.append(
            {
                "SPDXID": f"SPDXRef-File-{number}",
                "fileName": f"./{image_file.path}",
                "checksums": [
                    {"algorithm": "SHA1", "checksumValue": image_file.sha1},
                    {"algorithm": "SHA256", "checksumValue": image_file.sha256},
                ],
                "licenseConcluded": NOASSERTION,
                "copyrightText": NOASSERTION,
            }
        )
    return {
        "spdxVersion": "SPDX-2.3",
        "dataLicense": "CC0-1.0",
        "SPDXID": "SPDXRef-DOCUMENT",
        "name": f"{repository}@{digest}",
        # Unique per image, as SPDX wants, and the same on every publication of it.
        "documentNamespace": f"{NAMESPACE}/{quote(repository, safe='')}/{digest.removeprefix('sha256:')}",
        "creationInfo": {
            "created": created.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "creators": [f"Tool: {tool}"],
        },
        "packages": packages,
        "files": files,
        "relationships": relationships,
    }
