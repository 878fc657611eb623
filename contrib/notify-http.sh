#!/bin/sh
# notify-http.sh: an mxvault notify_command that sends each alert over HTTPS
# (docs/operations.md, "Alerts"). The first argument says where to:
#
#   webhook URL  POSTs {"event":..., "domain":..., "queued":N, "oldest_age":N,
#                "detail":..., "host":...} as application/json
#   ntfy URL     publishes to an ntfy topic (https://ntfy.sh/TOPIC or a server
#                of your own): a title, priority high for what needs someone
#                and low for the all-clear; a token, if any, in NTFY_TOKEN
#   slack URL    posts {"text": ...} to a Slack incoming webhook (Mattermost
#                and Rocket.Chat take the same)
#
#   notify_command = /usr/local/lib/mxvault/notify-http.sh ntfy https://ntfy.sh/my-backup-mx
#
# The URL may come from NOTIFY_URL instead. The alert is in the environment
# mxvault sets: EVENT, DOMAIN, QUEUED, OLDEST_AGE, DETAIL (printable ASCII
# only), MXVAULT_HOST. curl gives up after 20 s; mxvault kills the command
# at notify_timeout anyway.
set -eu

mode=${1:-}
url=${2:-${NOTIFY_URL:-}}
case $mode in
webhook | ntfy | slack) ;;
*)
	echo "usage: notify-http.sh webhook|ntfy|slack URL (or the URL in NOTIFY_URL)" >&2
	exit 64
	;;
esac
if [ -z "$url" ]; then
	echo "notify-http: no URL (give it after the mode, or in NOTIFY_URL)" >&2
	exit 64
fi

# A JSON string's content: backslashes and double quotes escaped (no control bytes reach here).
json() {
	printf '%s' "$1" | sed 's/\\/\\\\/g; s/"/\\"/g'
}

post() {
	exec curl --silent --show-error --fail --max-time 20 "$@" "$url"
}

case ${EVENT:-} in
recovered | drained | bounce-guard-off) all_clear=yes ;;
*) all_clear=no ;;
esac
summary="${DETAIL:-} (queued ${QUEUED:-0}, oldest ${OLDEST_AGE:-0}s)"

case $mode in
webhook)
	body=$(printf '{"event":"%s","domain":"%s","queued":%d,"oldest_age":%d,"detail":"%s","host":"%s"}' \
		"$(json "${EVENT:-}")" "$(json "${DOMAIN:-}")" "${QUEUED:-0}" "${OLDEST_AGE:-0}" \
		"$(json "${DETAIL:-}")" "$(json "${MXVAULT_HOST:-}")")
	post -H 'Content-Type: application/json' --data-binary "$body"
	;;
ntfy)
	if [ $all_clear = yes ]; then priority=low tags=white_check_mark; else priority=high tags=warning; fi
	title="mxvault ${MXVAULT_HOST:-}: ${EVENT:-alert}${DOMAIN:+ $DOMAIN}"
	if [ -n "${NTFY_TOKEN:-}" ]; then
		post -H "Authorization: Bearer $NTFY_TOKEN" -H "Title: $title" -H "Priority: $priority" \
			-H "Tags: $tags" --data-binary "$summary"
	fi
	post -H "Title: $title" -H "Priority: $priority" -H "Tags: $tags" --data-binary "$summary"
	;;
slack)
	if [ $all_clear = yes ]; then icon=':white_check_mark:'; else icon=':warning:'; fi
	text="$icon *${EVENT:-alert}*${DOMAIN:+ $DOMAIN} on ${MXVAULT_HOST:-mxvault}: $summary"
	post -H 'Content-Type: application/json' --data-binary "{\"text\":\"$(json "$text")\"}"
	;;
esac
