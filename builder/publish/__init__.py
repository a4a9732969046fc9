"""Publishing the images of a build: push, sign, attest; and verifying what was published."""
