"""What a publication says about an image: SLSA provenance and an SPDX SBOM, as in-toto
statements about the image's manifest digest."""
