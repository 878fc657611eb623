/*
 * privs: see privs.h. The order setgroups, setgid, setuid matters: once the
 * uid is gone, the groups can no longer be changed. The drop is verified,
 * not assumed: setuid(0) must fail afterwards, and every id (real,
 * effective, saved) must be the new one.
 */
#include "privs.h"

#include <errno.h>
#include <grp.h>
#include <sys/resource.h>
#include <unistd.h>

uint64_t privs_raise_fd_limit(uint64_t want)
{
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
		return 0;
	if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur >= want)
		return rl.rlim_cur;
	if (rl.rlim_max != RLIM_INFINITY && rl.rlim_max < want) {
		struct rlimit more = {want, want};
		if (setrlimit(RLIMIT_NOFILE, &more) == 0) /* root only */
			return want;
	}
	rl.rlim_cur = rl.rlim_max != RLIM_INFINITY && rl.rlim_max < want ? rl.rlim_max : want;
	if (setrlimit(RLIMIT_NOFILE, &rl) < 0 && getrlimit(RLIMIT_NOFILE, &rl) < 0)
		return 0;
	return rl.rlim_cur;
}

int privs_drop(uint32_t uid, uint32_t gid)
{
	gid_t g = (gid_t)gid;
	if (setgroups(1, &g) < 0 || setresgid(g, g, g) < 0 || setresuid((uid_t)uid, (uid_t)uid, (uid_t)uid) < 0)
		return -errno;
	uid_t ru, eu, su;
	gid_t rg, eg, sg;
	if (getresuid(&ru, &eu, &su) < 0 || getresgid(&rg, &eg, &sg) < 0)
		return -errno;
	if (ru != uid || eu != uid || su != uid || rg != g || eg != g || sg != g)
		return -EPERM;
	if (setuid(0) == 0)
		return -EPERM; /* root came back: refuse to go on */
	return 0;
}
