#!/bin/sh
# Dump the meterpay database in pg_dump's custom format (compressed; restore with pg_restore) to
# $BACKUP_DIR/meterpay-YYYYmmdd-HHMM.dump, check that it reads back, and delete dumps older than
# $KEEP_DAYS days. Needs METERPAY_DATABASE_URL (postgresql://user:password@host:port/db).
set -eu
BACKUP_DIR=${BACKUP_DIR:-/var/backups/meterpay}
KEEP_DAYS=${KEEP_DAYS:-30}
url=$(printf '%s' "$METERPAY_DATABASE_URL" | sed 's#^postgresql+psycopg://#postgresql://#')
mkdir -p "$BACKUP_DIR"
out="$BACKUP_DIR/meterpay-$(date +%Y%m%d-%H%M).dump"
pg_dump --format=custom --no-owner --file="$out.part" "$url"
pg_restore --list "$out.part" >/dev/null     # a dump that does not read back is not a backup
mv "$out.part" "$out"
find "$BACKUP_DIR" -name 'meterpay-*.dump' -mtime +"$KEEP_DAYS" -delete
echo "backup written: $out ($(du -h "$out" | cut -f1))"
