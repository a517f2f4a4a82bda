#!/usr/bin/env bash
# Backup and restore time of the test data set: ~20 MiB of random data and two small files in
# a volume, a folder of ~100 KB, a pg_dumpall of a Postgres (berth-test/postgres:15), to a local
# restic repository with berth-test/restic:0.14 — the integration test
# backup::backup_then_delete_then_restore_gives_the_same_files_and_rows, which prints the figures.
# Needs what the tests need (hack/test-images.sh). About 1 min after the build.
set -euo pipefail
cd "$(dirname "$0")/.."
bash hack/test-images.sh >/dev/null
for i in 1 2 3; do
  cargo test --locked --test it backup::backup_then_delete_then_restore -- --nocapture 2>&1 \
    | grep '^backup figures:' || { echo "bench-backup: the test failed" >&2; exit 1; }
done
