"""Open edX's uploaded files on Garage, the cluster's replicated S3 store.

Every file Open edX stores through Django's storage API goes to one of two buckets:
`public-media` (profile and video images, which pages link to) and `private` (everything
else: grade and problem reports, ORA submissions, course import/export archives, Learning
Core's assets), read only through URLs signed with the key below.

The settings reach Open edX as Tutor patches, the way a Tutor plugin adds them: a small
in-repo plugin registered in Tutor's hooks, whose patches read the site's values from
Tutor's config (MESHSEED_MEDIA_*), so one registration serves every site one process renders.

The S3 endpoint is the browser-facing host, files.<lms_host>, not the in-cluster Service:
SigV4 signs the Host header, so a signed URL works only on the host it was signed for, and
ORA's S3 backend hands browsers presigned upload URLs made from AWS_S3_ENDPOINT_URL. A pod
resolving that name reaches the caddy-edge of its own node (the hostPort DNAT), which
forwards to Garage's Service over the cluster's IPv6 network, keeping the Host header.
"""

from __future__ import annotations

# Garage's region name; Garage refuses a signature made for another region.
REGION = "garage"
PUBLIC_BUCKET = "public-media"
PRIVATE_BUCKET = "private"
BUCKETS = (PUBLIC_BUCKET, PRIVATE_BUCKET)
# Signed URLs live a day: long enough to download a big report, short enough that a URL
# copied out of the instructor dashboard stops working soon.
SIGNED_URL_SECONDS = 24 * 3600
# Tutor config keys this plugin reads; the secret key is a derived secret.
CONFIG_KEYS = ("MESHSEED_MEDIA_HOST", "MESHSEED_MEDIA_KEY_ID", "MESHSEED_MEDIA_SECRET_KEY")
SECRET_KEY = "MESHSEED_MEDIA_SECRET_KEY"


def media_host(lms_host: str) -> str:
    """The browser-facing host of the store (tutor-minio's default name, files.<lms_host>)."""
    return f"files.{lms_host}"


def tutor_settings(lms_host: str, key_id: str, secret_key: str) -> dict[str, str]:
    return {
        "MESHSEED_MEDIA_HOST": media_host(lms_host),
        "MESHSEED_MEDIA_KEY_ID": key_id,
        "MESHSEED_MEDIA_SECRET_KEY": secret_key,
    }


# Appended to the LMS's and Studio's production settings, after Tutor's partials (which set
# PROFILE_IMAGE_BACKEND's location and GRADES_DOWNLOAD on the filesystem), so these win.
# Options are django-storages' S3Storage keyword arguments; edx-platform passes each
# *_STORAGE_KWARGS / options dict to the storage class it names.
_SETTINGS = """\
# meshseed: uploaded files on Garage (builder/render/media.py)
AWS_ACCESS_KEY_ID = "{{ MESHSEED_MEDIA_KEY_ID }}"
AWS_SECRET_ACCESS_KEY = "{{ MESHSEED_MEDIA_SECRET_KEY }}"
AWS_S3_ENDPOINT_URL = "https://{{ MESHSEED_MEDIA_HOST }}"
AWS_S3_REGION_NAME = "@region@"
AWS_S3_SIGNATURE_VERSION = "s3v4"
AWS_S3_ADDRESSING_STYLE = "path"
AWS_STORAGE_BUCKET_NAME = "@private@"
AWS_DEFAULT_ACL = None
AWS_QUERYSTRING_AUTH = True
AWS_QUERYSTRING_EXPIRE = @expire@
AWS_S3_FILE_OVERWRITE = False
_MESHSEED_PRIVATE = {"bucket_name": "@private@", "querystring_auth": True}
# Public files: plain URLs on the edge's route to Garage's website endpoint, which serves
# only GET and HEAD, and only for the bucket whose website access the bootstrap Job enabled.
_MESHSEED_PUBLIC = {
    "bucket_name": "@public@",
    "querystring_auth": False,
    "custom_domain": "{{ MESHSEED_MEDIA_HOST }}/@public@",
}
STORAGES["default"] = {
    "BACKEND": "storages.backends.s3.S3Storage",
    "OPTIONS": dict(_MESHSEED_PRIVATE),
}
MEDIA_URL = "https://{{ MESHSEED_MEDIA_HOST }}/@public@/"
PROFILE_IMAGE_BACKEND = {
    "class": "storages.backends.s3.S3Storage",
    "options": dict(_MESHSEED_PUBLIC, location="profile-images"),
}
VIDEO_IMAGE_SETTINGS["STORAGE_CLASS"] = "storages.backends.s3.S3Storage"
VIDEO_IMAGE_SETTINGS["STORAGE_KWARGS"] = dict(_MESHSEED_PUBLIC, location="video-images")
VIDEO_IMAGE_SETTINGS["DIRECTORY_PREFIX"] = ""
VIDEO_TRANSCRIPTS_SETTINGS["STORAGE_CLASS"] = "storages.backends.s3.S3Storage"
VIDEO_TRANSCRIPTS_SETTINGS["STORAGE_KWARGS"] = dict(_MESHSEED_PRIVATE, location="video-transcripts")
VIDEO_TRANSCRIPTS_SETTINGS["DIRECTORY_PREFIX"] = ""
GRADES_DOWNLOAD = {
    "STORAGE_CLASS": "storages.backends.s3.S3Storage",
    "STORAGE_KWARGS": dict(_MESHSEED_PRIVATE, location="grades"),
}
FINANCIAL_REPORTS = {
    "STORAGE_CLASS": "storages.backends.s3.S3Storage",
    "STORAGE_KWARGS": dict(_MESHSEED_PRIVATE, location="financial-reports"),
}
# ORA's S3 backend: presigned uploads and downloads in the private bucket.
ORA2_FILEUPLOAD_BACKEND = "s3"
FILE_UPLOAD_STORAGE_BUCKET_NAME = "@private@"
FILE_UPLOAD_STORAGE_PREFIX = "ora2"
OPENEDX_LEARNING = {
    "MEDIA": {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": dict(_MESHSEED_PRIVATE, location="openedx-learning"),
    }
}
# meshseed: end of uploaded files
"""
# Tutor renders the patch with Jinja ({{ ... }}); the build's own constants go in first.
SETTINGS_PATCH = (
    _SETTINGS.replace("@region@", REGION)
    .replace("@private@", PRIVATE_BUCKET)
    .replace("@public@", PUBLIC_BUCKET)
    .replace("@expire@", str(SIGNED_URL_SECONDS))
)
PATCH_NAMES = ("openedx-lms-production-settings", "openedx-cms-production-settings")

_registered: list[bool] = []


def register_patches() -> None:
    """Add the settings patch to Tutor's hooks, once per process."""
    if _registered:
        return
    from tutor.hooks.catalog import Filters  # noqa: PLC0415 - loads only when Open edX renders

    Filters.ENV_PATCHES.add_items([(name, SETTINGS_PATCH) for name in PATCH_NAMES])
    _registered.append(True)
