#!/usr/bin/env bash
# Start the project machine's PostgreSQL and MariaDB when they are stopped.
set -u
pg_up() { pg_isready -h 127.0.0.1 -p 5432 >/dev/null 2>&1; }
maria_up() { mariadb-admin --protocol=tcp -h 127.0.0.1 -P 3306 -u root ping >/dev/null 2>&1 || mysqladmin --protocol=tcp -h 127.0.0.1 -P 3306 -u root ping >/dev/null 2>&1; }

if ! pg_up; then
  echo "services: starting PostgreSQL"
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n 1)" main start || true
fi
if ! maria_up; then
  echo "services: starting MariaDB"
  start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd || true
fi
for _ in $(seq 1 30); do
  pg_up && maria_up && break
  sleep 1
done
pg_up && echo "services: PostgreSQL ready" || echo "services: PostgreSQL NOT reachable"
maria_up && echo "services: MariaDB ready" || echo "services: MariaDB NOT reachable"
