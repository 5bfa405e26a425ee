/* SPDX-License-Identifier: Apache-2.0 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "helpers.h"
#include "common.h"

char *th_mkdtemp(void)
{
	const char *tmp = getenv("TMPDIR");
	char *p;
	if (asprintf(&p, "%s/strata-registry-test.XXXXXX", tmp && *tmp ? tmp : "/tmp") < 0)
		return NULL;
	if (!mkdtemp(p)) {
		free(p);
		return NULL;
	}
	return p;
}

void th_rm_rf(const char *path)
{
	if (path)
		(void)path_rm_rf_at(AT_FDCWD, path);
}

int th_write_file(const char *dir, const char *name, const char *content)
{
	_cleanup_free_ char *p = path_join(dir, name);
	_cleanup_free_ char *parent = NULL;
	_cleanup_close_ int fd = -1;
	char *slash;

	if (!p)
		return -ENOMEM;
	parent = strdup(p);
	if (!parent)
		return -ENOMEM;
	slash = strrchr(parent, '/');
	if (slash) {
		*slash = '\0';
		(void)path_mkdir_p(parent, 0755);
	}
	fd = open(p, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		return -errno;
	return loop_write(fd, content, strlen(content));
}

int th_spawn(char *const argv[], bool capture, struct th_proc *ret)
{
	int pipefd[2] = {-1, -1};
	pid_t parent = getpid(), pid;

	if (capture && pipe2(pipefd, O_CLOEXEC) < 0)
		return -errno;
	pid = fork();
	if (pid < 0)
		return -errno;
	if (pid == 0) {
		/* die with the test, even if it crashes */
		(void)prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (getppid() != parent)
			_exit(127);
		(void)setpgid(0, 0);
		if (capture)
			(void)dup2(pipefd[1], 1);
		if (!getenv("REGISTRY_TEST_VERBOSE")) {
			int null = open("/dev/null", O_WRONLY);
			if (null >= 0)
				(void)dup2(null, 2);
			if (!capture && null >= 0)
				(void)dup2(null, 1);
		}
		execvp(argv[0], argv);
		_exit(127);
	}
	if (capture)
		close(pipefd[1]);
	ret->pid = pid;
	ret->out_fd = capture ? pipefd[0] : -1;
	return 0;
}

char *th_read_line(struct th_proc *p, int timeout_ms)
{
	char buf[512];
	size_t n = 0;

	while (n < sizeof(buf) - 1) {
		struct pollfd pfd = {.fd = p->out_fd, .events = POLLIN};
		ssize_t k;
		if (poll(&pfd, 1, timeout_ms) <= 0)
			return NULL;
		k = read(p->out_fd, buf + n, 1);
		if (k <= 0)
			return NULL;
		if (buf[n] == '\n')
			break;
		n++;
	}
	buf[n] = '\0';
	return strdup(buf);
}

void th_stop(struct th_proc *p)
{
	if (p->pid > 0) {
		(void)kill(-p->pid, SIGTERM);
		(void)kill(p->pid, SIGTERM);
		for (int i = 0; i < 200; i++) {
			if (waitpid(p->pid, NULL, WNOHANG) == p->pid) {
				p->pid = 0;
				break;
			}
			usleep(10000);
		}
		if (p->pid > 0) {
			(void)kill(-p->pid, SIGKILL);
			(void)kill(p->pid, SIGKILL);
			(void)waitpid(p->pid, NULL, 0);
			p->pid = 0;
		}
	}
	if (p->out_fd >= 0) {
		close(p->out_fd);
		p->out_fd = -1;
	}
}

int th_run(char *const argv[])
{
	struct th_proc p;
	int status;

	if (th_spawn(argv, false, &p) < 0)
		return -1;
	if (waitpid(p.pid, &status, 0) != p.pid)
		return -1;
	return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

int th_free_port(void)
{
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof(a);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), port = -1;

	if (fd < 0)
		return -1;
	if (bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0 &&
	    getsockname(fd, (struct sockaddr *)&a, &len) == 0)
		port = ntohs(a.sin_port);
	close(fd);
	return port;
}

bool th_wait_port(int port, int timeout_ms)
{
	for (int waited = 0; waited < timeout_ms; waited += 50) {
		struct sockaddr_in a = {.sin_family = AF_INET,
		                        .sin_port = htons(port),
		                        .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
		int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (fd < 0)
			return false;
		if (connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0) {
			close(fd);
			return true;
		}
		close(fd);
		usleep(50000);
	}
	return false;
}
