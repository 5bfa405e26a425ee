/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The listening unix socket: a 0711 parent directory, a 0660 socket, refusal
 * to start when another server answers at the address, replacement of a stale
 * socket file. Also systemd readiness.
 */
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include "config.h"
#include "proxy-internal.h"

#if HAVE_LIBSYSTEMD
#include <systemd/sd-daemon.h>
#endif

static int address_fill(const char *path, struct sockaddr_un *sa, socklen_t *len)
{
	size_t n = strlen(path);

	if (n == 0 || n >= sizeof(sa->sun_path))
		return -ENAMETOOLONG;
	*sa = (struct sockaddr_un){.sun_family = AF_UNIX};
	memcpy(sa->sun_path, path, n + 1);
	*len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n + 1);
	return 0;
}

/* 1 if something accepts connections at path, 0 if nothing does (missing or
 * stale socket), < 0 if path exists but is not a socket. */
static int probe_address(const char *path, struct strata_error **ret_err)
{
	_cleanup_close_ int fd = -1;
	struct sockaddr_un sa;
	struct stat st;
	socklen_t len;
	int r;

	if (lstat(path, &st) < 0) {
		if (errno == ENOENT)
			return 0;
		return strata_error_set_errno(ret_err, negative_errno(), "stat \"%s\"", path);
	}
	if (!S_ISSOCK(st.st_mode))
		return strata_error_set(ret_err, -EEXIST,
		                        "\"%s\" exists and is not a socket; remove it or choose "
		                        "another --address",
		                        path);

	r = address_fill(path, &sa, &len);
	if (r < 0)
		return strata_error_set(ret_err, r, "socket path \"%s\" is too long", path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return strata_error_set_errno(ret_err, negative_errno(), "socket");
	if (connect(fd, (struct sockaddr *)&sa, len) == 0)
		return 1;
	return 0;
}

int proxy_socket_listen(const char *path, bool *ret_created, struct strata_error **ret_err)
{
	_cleanup_free_ char *parent = NULL;
	_cleanup_close_ int fd = -1;
	struct sockaddr_un sa;
	struct stat st;
	socklen_t len;
	char *slash;
	int r;

	r = address_fill(path, &sa, &len);
	if (r < 0)
		return strata_error_set(ret_err, r, "socket path \"%s\" is empty or too long",
		                        path);

	parent = strdup(path);
	if (!parent)
		return -ENOMEM;
	slash = strrchr(parent, '/');
	if (slash && slash != parent) {
		*slash = '\0';
		if (stat(parent, &st) < 0) {
			if (errno != ENOENT)
				return strata_error_set_errno(ret_err, negative_errno(),
				                              "stat \"%s\"", parent);
			r = path_mkdir_p(parent, 0711);
			if (r < 0)
				return strata_error_set_errno(ret_err, r, "create \"%s\"", parent);
			/* The umask may have taken bits away. */
			(void)chmod(parent, 0711);
		}
	}

	r = probe_address(path, ret_err);
	if (r < 0)
		return r;
	if (r > 0)
		return strata_error_set(ret_err, -EADDRINUSE,
		                        "another server is already listening on \"%s\"; stop it "
		                        "or choose another --address",
		                        path);
	if (unlink(path) < 0 && errno != ENOENT)
		return strata_error_set_errno(ret_err, negative_errno(),
		                              "remove stale socket \"%s\"", path);

	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return strata_error_set_errno(ret_err, negative_errno(), "socket");
	/* On Linux the socket inode's mode is what bind() gives the file (minus
	 * the umask), so it never exists with looser permissions. */
	(void)fchmod(fd, 0660);
	if (bind(fd, (struct sockaddr *)&sa, len) < 0)
		return strata_error_set_errno(ret_err, negative_errno(), "bind \"%s\"", path);
	if (chmod(path, 0660) < 0 || listen(fd, 1024) < 0) {
		r = strata_error_set_errno(ret_err, negative_errno(), "listen on \"%s\"", path);
		(void)unlink(path);
		return r;
	}
	*ret_created = true;
	return TAKE_FD(fd);
}

int proxy_server_notify_ready(void)
{
#if HAVE_LIBSYSTEMD
	return sd_notify(0, "READY=1");
#else
	return 0;
#endif
}

void proxy_notify_stopping(void)
{
#if HAVE_LIBSYSTEMD
	(void)sd_notify(0, "STOPPING=1");
#endif
}
