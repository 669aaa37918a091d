"""Print where to find the running system (make run)."""
from services.common.settings import PORTS, _public_url

print("\nLinli is starting. Open:")
labels = {"requests": "resident form and tracking", "volunteers": "volunteer offers", "notify": "notifications",
          "community": "register and visits"}
for name in PORTS:
    print(f"  {labels[name]:<28} {_public_url(name)}/")
print(f"  {'staff console':<28} {_public_url('requests')}/staff/")
print("    demo staff: office (admin), grid1 (grid leader), hall-3-1 (hallway leader);")
print("    password: LINLI_DEMO_STAFF_PASSWORD in .env")
print("  API documentation:          <service>/docs")
print("Staff API token: LINLI_ADMIN_TOKEN in .env. Stop with Ctrl-C.\n")
