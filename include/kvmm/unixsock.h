/* Unix socket helpers shared by the socket front ends (serial unix:, QMP) (src/core/unixsock.c). */
#ifndef KVMM_UNIXSOCK_H
#define KVMM_UNIXSOCK_H

#include <sys/un.h>

/* Makes sa->sun_path free to bind: nothing there is 0; a socket file nobody listens on (left over
 * from a kvmm that died) is removed; a live socket is -EADDRINUSE; anything else -EEXIST (refused
 * rather than deleted); other failures -errno. */
int unixsock_clear_stale(const struct sockaddr_un *sa);

#endif
