/*
 * milter_int: what milter.c (connections, the packet queue, replies) and
 * milter_stage.c (the stages a session asks for) share. Only src/milter/
 * includes it.
 */
#ifndef MXV_MILTER_INT_H
#define MXV_MILTER_INT_H

#include "milter.h"

struct bufferevent;
struct event;

enum mc_state { MC_NEW, MC_CONNECTING, MC_READY, MC_DEAD };
enum ms_stage { STAGE_NONE, STAGE_MAIL, STAGE_RCPT, STAGE_EOM };

struct mconn {
	struct milter_sess *ms;
	const char *spec;
	enum mc_state st;
	struct bufferevent *bev;
	struct event *timer;
	uint32_t actions, steps;
	char owed;               /* the command whose reply comes next, 0 if none */
	uint64_t owed_gen;       /* the message it belongs to */
	struct buf q;            /* packets not yet sent */
	size_t q_off;
	size_t last_body;        /* offset in q of an unsent body packet that can grow, or SIZE_MAX */
	bool connect_sent;
	char *helo_sent;
	bool in_msg;             /* MAIL sent, message not ended */
	bool eom_sent;
	bool msg_done;           /* accepted or decided: nothing more of this message */
	bool sess_done;          /* accepted at connect/helo: nothing more of this session */
	struct milter_verdict stage_v, sess_v, msg_v;
};

struct milter_sess {
	struct event_base *base;
	struct milter_params p;
	struct mconn *mc;
	size_t n;
	enum ms_stage stage;
	size_t cur;
	uint64_t gen;            /* message generation */
	milter_done_fn *done;
	void *arg;
	struct event *done_ev;
	struct milter_verdict v; /* the stage's verdict, handed to done */
	struct milter_changes ch;
};

/* Bytes handed to a milter's socket at most; the rest waits in its queue. */
#define MILTER_OUT_MAX (256u << 10)

/* milter.c */
void milter_default_verdict(const struct mconn *mc, struct milter_verdict *v);
void milter_conn_close(struct mconn *mc);
bool milter_conn_live(const struct mconn *mc);
/* Queues the packets in b (connecting first if need be). */
void milter_conn_enqueue(struct mconn *mc, const struct buf *b);
void milter_conn_drop(struct mconn *mc);
/* Sends what can go now; calls milter_stage_next when the stage waits on mc and it is through. */
void milter_conn_pump(struct mconn *mc);

/* milter_stage.c */
void milter_stage_next(struct milter_sess *ms);

#endif
