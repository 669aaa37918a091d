"""Print where to find the running system (make run)."""
from services.common.settings import PORTS, _public_url

print("\nLinli is starting. Open:")
labels = {"requests": "resident form and tracking", "volunteers": "volunteer offers", "notify": "notifications"}
for name in PORTS:
    print(f"  {labels[name]:<28} {_public_url(name)}/")
print("  API documentation:          <service>/openapi.json")
print("Staff API token: LINLI_ADMIN_TOKEN in .env. Stop with Ctrl-C.\n")
