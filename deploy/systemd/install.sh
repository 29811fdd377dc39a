#!/usr/bin/env bash
# Installs a Pleiades node under systemd: the daemon binaries and the
# pleiades CLI into /usr/local/bin, the units into /etc/systemd/system, the
# node's settings into /etc/pleiades/pleiades.env (an existing one is kept),
# the UDP buffer limits of the bus into /etc/sysctl.d/90-pleiades.conf, and
# the system user pleiades that runs the daemons.
#
#   deploy/systemd/install.sh [--bin-dir DIR] [--root DIR]
#
# --bin-dir holds the binaries (default ./bin: `make build`). --root installs
# under another root (packaging, tests): no user is created and systemd is
# not told. Run as root.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
bin="$here/../../bin"
root=
while [ $# -gt 0 ]; do
  case $1 in
    --bin-dir) bin=$2; shift 2 ;;
    --root) root=$2; shift 2 ;;
    -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
    *) echo "install: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
daemons="stored clockd gossipd raftd workflowd msgd"
for b in $daemons pleiades; do
  [ -x "$bin/$b" ] || { echo "install: $bin/$b missing: run make build, or give --bin-dir" >&2; exit 1; }
done

install -d -m 0755 "$root/usr/local/bin" "$root/etc/systemd/system"
for b in $daemons pleiades; do
  install -m 0755 "$bin/$b" "$root/usr/local/bin/$b"
done
for d in $daemons; do
  install -m 0644 "$here/pleiades-$d.service" "$root/etc/systemd/system/pleiades-$d.service"
done
install -m 0644 "$here/pleiades.target" "$root/etc/systemd/system/pleiades.target"
install -d -m 0755 "$root/etc/sysctl.d"
install -m 0644 "$here/90-pleiades.conf" "$root/etc/sysctl.d/90-pleiades.conf"
install -d -m 0750 "$root/etc/pleiades"
if [ ! -e "$root/etc/pleiades/pleiades.env" ]; then
  install -m 0640 "$here/pleiades.env" "$root/etc/pleiades/pleiades.env"
fi

if [ -n "$root" ]; then
  echo "installed under $root"
  exit 0
fi
if ! id pleiades >/dev/null 2>&1; then
  useradd --system --home-dir /var/lib/pleiades --no-create-home --shell /usr/sbin/nologin pleiades
fi
chgrp pleiades /etc/pleiades /etc/pleiades/pleiades.env
systemctl daemon-reload
sysctl --load /etc/sysctl.d/90-pleiades.conf >/dev/null || echo "install: could not apply /etc/sysctl.d/90-pleiades.conf now (it applies at boot)" >&2
cat <<'NEXT'
Installed. Next, on this host:
  1. edit /etc/pleiades/pleiades.env: NODE_ADVERTISE_HOST (this host's IP or name), PLEIADES_JOIN (other hosts' :7403)
  2. certificates: once per cluster `pleiades cert create-ca --certs-dir CA` (keep CA private), then per host
     `pleiades cert create-node --ca-dir CA --out-dir /etc/pleiades/certs --name $(hostname) --hosts <advertised host>`
     (and `pleiades cert create-admin --ca-dir CA --out-dir <the CLI's certs dir>` for init and status),
     then `chown -R pleiades:pleiades /etc/pleiades/certs` (keys stay 0600: daemons refuse readable ones)
  3. systemctl enable --now pleiades.target      (on every host; gossipd is ready once it joined one seed)
  4. once, from any host: pleiades init --addr <a host>:7402 --certs-dir /etc/pleiades/certs --min-nodes <hosts>
  5. systemctl status 'pleiades-*'; pleiades health
NEXT
