#!/usr/bin/env bash
# Route change → served: the time from `berth apply` starting to the new route's first 200
# through Caddy (Debian's Caddy 2.6 on a systemd test host, a certificate from pebble through
# Caddy's ACME flow included). The figure is printed by the integration test that measures it:
#
#   hack/bench-route.sh
#
# Needs the test images (hack/test-images.sh, hack/test-host.sh) and a Docker Engine.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target}
cargo test --test it proxy::routes_are_served_with_https_access_sets_and_headers -- --nocapture 2>&1 \
  | grep -E 'route change → served|test result'
cargo test --test it proxy::a_route_only_service_is_replaced_without_a_failed_request -- --nocapture 2>&1 \
  | grep -E 'zero-downtime replace|test result'
