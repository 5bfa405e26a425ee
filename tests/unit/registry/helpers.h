/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Test helpers for content/registry/: temp dirs, files, and child processes
 * that cannot outlive the test (PR_SET_PDEATHSIG, killed in teardown).
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

/* mkdtemp under $TMPDIR or /tmp; malloc'd path. */
char *th_mkdtemp(void);
void th_rm_rf(const char *path);
/* Write a file (creating parent dirs); 0 or -errno. */
int th_write_file(const char *dir, const char *name, const char *content);

struct th_proc {
	pid_t pid;
	int out_fd; /* child's stdout, or -1 */
};

/* Start argv with stdout on a pipe (if capture) and stderr to /dev/null
 * unless verbose; the child dies with the test process. */
int th_spawn(char *const argv[], bool capture, struct th_proc *ret);
/* Read one line from the child's stdout (timeout in ms); malloc'd. */
char *th_read_line(struct th_proc *p, int timeout_ms);
/* SIGTERM, wait up to 2 s, then SIGKILL; reaps. */
void th_stop(struct th_proc *p);
/* Run argv to completion; returns its exit status (or -1). */
int th_run(char *const argv[]);
/* A free TCP port on 127.0.0.1. */
int th_free_port(void);
/* Poll until a TCP connect to 127.0.0.1:port succeeds (timeout in ms). */
bool th_wait_port(int port, int timeout_ms);
