#!/bin/sh
# Remove what the demo created (make remove-demo): the demo staff accounts,
# the demo volunteers and station, and the demo register. Production
# refuses to start while a demo account or volunteer can still sign in.
set -e
export FLASK_SKIP_DOTENV=1
for service in requests volunteers community; do
  flask --app "services.$service" remove-demo
done
