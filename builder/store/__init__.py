"""The Nix-style core: derivations, the content-addressed store and the scheduler."""
