/*
 * mta_sts_fetch: see mta_sts_fetch.h. Owns one curl multi handle, an event
 * per socket curl asks us to watch (made and dropped in the socket
 * callback) and one timer set from curl's timer callback; curl is only ever
 * driven from those events (curl_multi_socket_action), so it never runs
 * inside mta_sts_fetch_start. Each transfer is on the fetcher's list until
 * it finishes; finished transfers are taken off curl before any callback
 * runs, so a callback may start another.
 * Error policy: out of memory is fatal; every other failure is one
 * callback with a short why, for the log and the caller's fallback.
 */
#include "mta_sts_fetch.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <errno.h>
#include <event2/event.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "base/util.h"

#define CONNECT_TIMEOUT_S 15L
#define TOTAL_TIMEOUT_S 60L  /* RFC 8461 3.3 suggests a minute at most */
#define RESOLVE_ADDRS_MAX 8

struct fetch_sock {
	struct mta_sts_fetcher *f;
	curl_socket_t fd;
	struct event *ev;
	struct fetch_sock *prev, *next;
};

struct mta_sts_fetch {
	struct mta_sts_fetcher *f;
	struct mta_sts_fetch *prev, *next;
	CURL *easy;
	struct curl_slist *resolve;
	struct buf body;
	bool too_big;
	char errbuf[CURL_ERROR_SIZE];
	char why[CURL_ERROR_SIZE + 32];
	mta_sts_fetch_fn *fn;
	void *arg;
};

struct mta_sts_fetcher {
	struct event_base *base;
	CURLM *multi;
	struct event *timer;
	char *ca_file;
	struct mta_sts_fetch *fetches;
	struct fetch_sock *socks;
};

/* --- curl's events on the loop --------------------------------------------- */

static void drive(struct mta_sts_fetcher *f, curl_socket_t fd, int flags);

static void on_sock(evutil_socket_t fd, short what, void *arg)
{
	struct fetch_sock *s = arg;
	int flags = (what & EV_READ ? CURL_CSELECT_IN : 0) | (what & EV_WRITE ? CURL_CSELECT_OUT : 0);
	drive(s->f, fd, flags); /* may free s (CURL_POLL_REMOVE): libevent allows it from the callback */
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	drive(arg, CURL_SOCKET_TIMEOUT, 0);
}

static void sock_free(struct fetch_sock *s)
{
	struct mta_sts_fetcher *f = s->f;
	if (s->prev)
		s->prev->next = s->next;
	else
		f->socks = s->next;
	if (s->next)
		s->next->prev = s->prev;
	if (s->ev)
		event_free(s->ev);
	free(s);
}

/* CURLMOPT_SOCKETFUNCTION: watch fd for what curl wants, or stop. */
static int sock_cb(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp)
{
	(void)easy;
	struct mta_sts_fetcher *f = userp;
	struct fetch_sock *s = socketp;
	if (what == CURL_POLL_REMOVE) {
		if (s)
			sock_free(s);
		curl_multi_assign(f->multi, fd, NULL);
		return 0;
	}
	if (!s) {
		s = xcalloc(1, sizeof(*s));
		s->f = f;
		s->fd = fd;
		s->next = f->socks;
		if (s->next)
			s->next->prev = s;
		f->socks = s;
		curl_multi_assign(f->multi, fd, s);
	} else if (s->ev) {
		event_free(s->ev);
	}
	short ev = (short)(EV_PERSIST | (what & CURL_POLL_IN ? EV_READ : 0) | (what & CURL_POLL_OUT ? EV_WRITE : 0));
	s->ev = event_new(f->base, fd, ev, on_sock, s);
	if (!s->ev || event_add(s->ev, NULL) < 0)
		abort();
	return 0;
}

/* CURLMOPT_TIMERFUNCTION: curl is driven from the timer event, never from here. */
static int timer_cb(CURLM *multi, long timeout_ms, void *userp)
{
	(void)multi;
	struct mta_sts_fetcher *f = userp;
	if (timeout_ms < 0) {
		evtimer_del(f->timer);
		return 0;
	}
	struct timeval tv = {timeout_ms / 1000, (timeout_ms % 1000) * 1000};
	return evtimer_add(f->timer, &tv) < 0 ? -1 : 0;
}

/* --- transfers -------------------------------------------------------------- */

static size_t on_body(char *p, size_t size, size_t nmemb, void *arg)
{
	struct mta_sts_fetch *t = arg;
	size_t n = size * nmemb;
	if (t->body.len + n > MTA_STS_FETCH_BODY_MAX) {
		t->too_big = true;
		return 0; /* curl aborts the transfer (CURLE_WRITE_ERROR) */
	}
	buf_append(&t->body, p, n);
	return n;
}

static void fetch_unlink(struct mta_sts_fetch *t)
{
	struct mta_sts_fetcher *f = t->f;
	if (t->prev)
		t->prev->next = t->next;
	else
		f->fetches = t->next;
	if (t->next)
		t->next->prev = t->prev;
	t->prev = t->next = NULL;
}

static void fetch_free(struct mta_sts_fetch *t)
{
	if (t->easy)
		curl_easy_cleanup(t->easy);
	curl_slist_free_all(t->resolve);
	buf_free(&t->body);
	free(t);
}

/* RFC 8461 3.3: "text/plain", parameters (a charset) allowed. */
static bool is_text_plain(const char *ct)
{
	if (!ct || strncasecmp(ct, "text/plain", 10) != 0)
		return false;
	return ct[10] == '\0' || ct[10] == ';' || ct[10] == ' ' || ct[10] == '\t';
}

/* Fills t->why when the finished transfer did not bring a policy file. */
static void judge(struct mta_sts_fetch *t, CURLcode rc)
{
	long status = 0;
	const char *ct = NULL;
	if (t->too_big) {
		snprintf(t->why, sizeof(t->why), "the policy is larger than 64 KiB");
	} else if (rc != CURLE_OK) {
		snprintf(t->why, sizeof(t->why), "%s", t->errbuf[0] ? t->errbuf : curl_easy_strerror(rc));
	} else if (curl_easy_getinfo(t->easy, CURLINFO_RESPONSE_CODE, &status) != CURLE_OK || status != 200) {
		snprintf(t->why, sizeof(t->why), "HTTP status %ld", status); /* redirects included (RFC 8461 3.3) */
	} else if (curl_easy_getinfo(t->easy, CURLINFO_CONTENT_TYPE, &ct) != CURLE_OK || !is_text_plain(ct)) {
		snprintf(t->why, sizeof(t->why), "Content-Type is not text/plain");
	}
}

/* Runs curl on fd (or its timers), then answers every finished transfer. */
static void drive(struct mta_sts_fetcher *f, curl_socket_t fd, int flags)
{
	int running;
	curl_multi_socket_action(f->multi, fd, flags, &running);
	struct mta_sts_fetch *done = NULL;
	CURLMsg *msg;
	int left;
	while ((msg = curl_multi_info_read(f->multi, &left))) {
		if (msg->msg != CURLMSG_DONE)
			continue;
		struct mta_sts_fetch *t = NULL;
		curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&t);
		judge(t, msg->data.result);
		curl_multi_remove_handle(f->multi, t->easy);
		fetch_unlink(t);
		t->next = done;
		done = t;
	}
	while (done) {
		struct mta_sts_fetch *t = done;
		done = t->next;
		if (t->why[0])
			t->fn(t->arg, NULL, 0, t->why);
		else
			t->fn(t->arg, t->body.len ? (const char *)t->body.data : "", t->body.len, NULL);
		fetch_free(t);
	}
}

/* "mta-sts.DOMAIN:PORT:ip,ip": the addresses our resolver found, for curl. */
static struct curl_slist *resolve_list(const char *host, const struct dns_addr *addrs, size_t n)
{
	struct buf b = {0};
	uint16_t port = 0;
	for (size_t i = 0; i < n && i < RESOLVE_ADDRS_MAX; i++) {
		char ip[INET6_ADDRSTRLEN];
		const struct sockaddr_storage *ss = &addrs[i].ss;
		bool v6 = ss->ss_family == AF_INET6;
		const void *a = v6 ? (const void *)&((const struct sockaddr_in6 *)ss)->sin6_addr
				   : (const void *)&((const struct sockaddr_in *)ss)->sin_addr;
		if (!inet_ntop(ss->ss_family, a, ip, sizeof(ip)))
			continue;
		if (!b.len) {
			port = ntohs(v6 ? ((const struct sockaddr_in6 *)ss)->sin6_port
					: ((const struct sockaddr_in *)ss)->sin_port);
			buf_printf(&b, "%s:%u:", host, port);
		} else {
			buf_append_str(&b, ",");
		}
		buf_printf(&b, v6 ? "[%s]" : "%s", ip);
	}
	struct curl_slist *l = b.len ? curl_slist_append(NULL, buf_cstr(&b)) : NULL;
	buf_free(&b);
	return l;
}

static int fetch_setup(struct mta_sts_fetcher *f, struct mta_sts_fetch *t, const char *url)
{
	CURL *e = t->easy;
	CURLcode rc = CURLE_OK;
#define SET(opt, val) (rc = rc != CURLE_OK ? rc : curl_easy_setopt(e, opt, val))
	SET(CURLOPT_URL, url);
	SET(CURLOPT_RESOLVE, t->resolve);
	SET(CURLOPT_PROTOCOLS_STR, "https");
	SET(CURLOPT_FOLLOWLOCATION, 0L);             /* RFC 8461 3.3: no redirects */
	SET(CURLOPT_PROXY, "");                      /* never a proxy from the environment */
	SET(CURLOPT_NOPROXY, "*");
	SET(CURLOPT_SSL_VERIFYPEER, 1L);
	SET(CURLOPT_SSL_VERIFYHOST, 2L);
	SET(CURLOPT_SSLVERSION, (long)CURL_SSLVERSION_TLSv1_2);
	if (f->ca_file)
		SET(CURLOPT_CAINFO, f->ca_file);
	SET(CURLOPT_CONNECTTIMEOUT, CONNECT_TIMEOUT_S);
	SET(CURLOPT_TIMEOUT, TOTAL_TIMEOUT_S);
	SET(CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)MTA_STS_FETCH_BODY_MAX);
	SET(CURLOPT_FRESH_CONNECT, 1L);              /* no idle connection kept between fetches */
	SET(CURLOPT_FORBID_REUSE, 1L);
	SET(CURLOPT_NOSIGNAL, 1L);
	SET(CURLOPT_USERAGENT, "mxvault");
	SET(CURLOPT_WRITEFUNCTION, on_body);
	SET(CURLOPT_WRITEDATA, t);
	SET(CURLOPT_ERRORBUFFER, t->errbuf);
	SET(CURLOPT_PRIVATE, t);
#undef SET
	return rc == CURLE_OK ? 0 : -EINVAL;
}

int mta_sts_fetch_start(struct mta_sts_fetcher *f, const char *domain, const struct dns_addr *addrs, size_t n,
			mta_sts_fetch_fn *fn, void *arg)
{
	char host[300], url[400];
	if (fmt(host, sizeof(host), "mta-sts.%s", domain) < 0 ||
	    fmt(url, sizeof(url), "https://%s/.well-known/mta-sts.txt", host) < 0)
		return -EINVAL;
	struct mta_sts_fetch *t = xcalloc(1, sizeof(*t));
	t->f = f;
	t->fn = fn;
	t->arg = arg;
	t->resolve = resolve_list(host, addrs, n);
	t->easy = curl_easy_init();
	if (!t->resolve || !t->easy || fetch_setup(f, t, url) < 0 ||
	    curl_multi_add_handle(f->multi, t->easy) != CURLM_OK) {
		int rc = t->resolve ? -ENOMEM : -EINVAL; /* no address curl could use, or curl out of memory */
		fetch_free(t);
		return rc;
	}
	t->next = f->fetches;
	if (t->next)
		t->next->prev = t;
	f->fetches = t;
	return 0;
}

/* --- lifetime --------------------------------------------------------------- */

struct mta_sts_fetcher *mta_sts_fetcher_new(struct event_base *base, const char *ca_file)
{
	static bool curl_ready;
	if (!curl_ready) {
		if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
			return NULL;
		curl_ready = true; /* for the life of the process: curl_global_cleanup is not safe to repeat */
	}
	struct mta_sts_fetcher *f = xcalloc(1, sizeof(*f));
	f->base = base;
	f->ca_file = ca_file ? xstrdup(ca_file) : NULL;
	f->multi = curl_multi_init();
	f->timer = evtimer_new(base, on_timer, f);
	if (!f->multi || !f->timer) {
		mta_sts_fetcher_free(f);
		return NULL;
	}
	curl_multi_setopt(f->multi, CURLMOPT_SOCKETFUNCTION, sock_cb);
	curl_multi_setopt(f->multi, CURLMOPT_SOCKETDATA, f);
	curl_multi_setopt(f->multi, CURLMOPT_TIMERFUNCTION, timer_cb);
	curl_multi_setopt(f->multi, CURLMOPT_TIMERDATA, f);
	return f;
}

void mta_sts_fetcher_free(struct mta_sts_fetcher *f)
{
	if (!f)
		return;
	while (f->fetches) {
		struct mta_sts_fetch *t = f->fetches;
		curl_multi_remove_handle(f->multi, t->easy);
		fetch_unlink(t);
		fetch_free(t);
	}
	if (f->multi)
		curl_multi_cleanup(f->multi);
	while (f->socks) /* any curl did not say REMOVE for */
		sock_free(f->socks);
	if (f->timer)
		event_free(f->timer);
	free(f->ca_file);
	free(f);
}
