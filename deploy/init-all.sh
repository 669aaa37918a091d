#!/bin/sh
# Migrate and seed every service's database. Idempotent: make run and the
# compose `init` service run it before anything else starts.
set -e
export FLASK_SKIP_DOTENV=1  # honcho or compose already set the environment
for service in requests volunteers notify community; do
  flask --app "services.$service" init-db
done
