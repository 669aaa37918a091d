"""Create .env from .env.example with fresh random secrets (make run).
Every `change-me` becomes a random value of 43 characters; the local demo's
staff password is added (make run turns the demo on)."""
import secrets
import sys

source, target = sys.argv[1], sys.argv[2]
lines = []
for line in open(source, encoding="utf-8"):
    key, sep, value = line.rstrip("\n").partition("=")
    if sep and not key.startswith("#") and value.startswith("change-me"):
        line = f"{key}={secrets.token_urlsafe(32)}\n"
    lines.append(line)
lines.append("\n# make run's demo: the password of the demo staff accounts office, grid1 and hall-3-1.\n")
lines.append(f"LINLI_DEMO_STAFF_PASSWORD={secrets.token_urlsafe(12)}\n")
with open(target, "x", encoding="utf-8") as fh:
    fh.writelines(lines)
