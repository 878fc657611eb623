#!/bin/sh
# Installs the Debian packages mxvault needs to build, test and benchmark,
# and creates the system user the daemon runs as (user = mxvault, the
# default). Idempotent and quiet when everything is present; needs root to
# install.
set -eu

# The unprivileged user `serve` switches to when started as root.
ensure_user() {
	id mxvault >/dev/null 2>&1 && return 0
	if [ "$(id -u)" != 0 ]; then
		echo "deps: no user mxvault (as root: useradd --system mxvault)" >&2
		return 0
	fi
	echo "deps: creating the system user mxvault" >&2
	useradd --system --user-group --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin mxvault
}
trap ensure_user EXIT
PKGS="build-essential clang pkg-config libevent-dev libc-ares-dev libinih-dev libssl-dev
      libpsl-dev publicsuffix zlib1g-dev libcurl4-openssl-dev liblmdb-dev libcmocka-dev python3 python3-aiosmtpd python3-yaml python3-dkim python3-nacl python3-milter spamass-milter spamassassin spamd swaks libnet-ssleay-perl postfix unbound
      ldnsutils dnsutils iproute2 util-linux groff-base curl libsystemd-dev systemd
      prometheus chromium chromium-driver python3-selenium"
missing=""
for p in $PKGS; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
if [ "$(id -u)" != 0 ]; then
  echo "deps: missing packages:$missing (run as root, or install them)" >&2
  exit 1
fi
echo "deps: installing$missing" >&2
export DEBIAN_FRONTEND=noninteractive
# Postfix is installed only for smtp-source/smtp-sink; keep its daemon from starting.
printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d.mxvault
[ -e /usr/sbin/policy-rc.d ] || { cp /usr/sbin/policy-rc.d.mxvault /usr/sbin/policy-rc.d; chmod +x /usr/sbin/policy-rc.d; rm_policy=1; }
rm -f /usr/sbin/policy-rc.d.mxvault
echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
apt-get update -q >/dev/null
apt-get install -y -q --no-install-recommends $missing >/dev/null
[ "${rm_policy:-0}" = 1 ] && rm -f /usr/sbin/policy-rc.d
exit 0
