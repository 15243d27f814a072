#!/bin/sh
# make-secrets.sh writes fresh random secrets for a trial into
# deploy/secrets/ (one file each, mode 0600), for deploy/trial.env and
# deploy/compose.yaml. It never overwrites a file that exists: keys that
# already hashed or sealed data must stay.
set -eu
dir=$(dirname "$0")/secrets
umask 077
mkdir -p "$dir"
rand() { head -c "$1" /dev/urandom | base64 | tr -d '\n'; }
token() { head -c 18 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n'; }
write() {
	if [ -e "$dir/$1" ]; then
		echo "kept    $dir/$1"
		return
	fi
	printf '%s\n' "$2" >"$dir/$1"
	echo "created $dir/$1"
}
write hmac_key "k1:$(rand 32)"
write enc_key "e1:$(rand 32)"
write admin_tokens "operator:$(token),auditor:$(token)"
write sms_secret "$(rand 32)"
write pg_password "$(token)"
# The PostgreSQL password file of the compose trial, in pgpass format
# (host:port:database:user:password), read by pgx through PGPASSFILE.
[ -e "$dir/pgpass" ] || { printf 'postgres:5432:*:prereg:%s\n' "$(cat "$dir/pg_password")" >"$dir/pgpass"; echo "created $dir/pgpass"; }
# The compose services run as uid 65532 and get each file bind-mounted
# with its own mode, so the files must be readable by others; the folder
# (0700) keeps other users of this machine out.
chmod 0644 "$dir"/*
