"""Create .env from .env.example with fresh random secrets (make run)."""
import secrets
import sys

source, target = sys.argv[1], sys.argv[2]
lines = []
for line in open(source, encoding="utf-8"):
    key, sep, value = line.rstrip("\n").partition("=")
    if sep and value.startswith("change-me"):
        line = f"{key}={secrets.token_urlsafe(24)}\n"
    lines.append(line)
with open(target, "x", encoding="utf-8") as fh:
    fh.writelines(lines)
