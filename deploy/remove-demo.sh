#!/bin/sh
# Remove what the demo created (make remove-demo): the demo staff accounts
# and the demo volunteers and station. Production refuses to start while
# one of them can still sign in.
set -e
export FLASK_SKIP_DOTENV=1
for service in requests volunteers; do
  flask --app "services.$service" remove-demo
done
