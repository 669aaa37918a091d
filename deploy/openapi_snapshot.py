"""Write each service's OpenAPI document to docs/openapi/<service>.json
(make openapi); tests/test_openapi.py keeps the snapshot in sync."""
import importlib
import json
import secrets
import sys
from pathlib import Path

OUT = Path(__file__).resolve().parents[1] / "docs" / "openapi"


def document(service: str) -> dict:
    from services.common.settings import OWN_SECRETS, SECRETS

    # The document does not depend on any secret: throwaway ones let the app start.
    throwaway = {key: secrets.token_urlsafe(32) for key in (*SECRETS, *OWN_SECRETS)}
    app = importlib.import_module(f"services.{service}").create_app({"DATABASE_URL": "sqlite://", **throwaway})
    return app.extensions["openapi"].spec.to_dict()


def text(service: str) -> str:
    return json.dumps(document(service), indent=1, sort_keys=True, ensure_ascii=False) + "\n"


if __name__ == "__main__":
    OUT.mkdir(parents=True, exist_ok=True)
    for name in sys.argv[1:] or ("requests", "volunteers", "notify", "community"):
        (OUT / f"{name}.json").write_text(text(name), encoding="utf-8")
        print(f"wrote docs/openapi/{name}.json")
