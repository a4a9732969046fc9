"""One wrapper module per external program; each logs the command it runs."""
