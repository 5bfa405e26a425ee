/* SPDX-License-Identifier: Apache-2.0 */
/*
 * runtime/: everything `strata run` needs beyond the image: host checks,
 * the OCI bundle and config.json, CNI networking, and the shim v2 client
 * (containerd-shim-runc-v2 over ttrpc). Lives in the CLI process.
 *
 * This first part owns the host checks behind `strata doctor` and the lookup
 * of the external binaries the runtime depends on.
 */
#pragma once

#include <stddef.h>

#include "common.h"

/* Where Debian's containernetworking-plugins installs the CNI plugins. */
#define RT_DEFAULT_CNI_PATH "/usr/lib/cni"

/* Find an executable in $PATH (or a default PATH when unset), as
 * containerd does for its shims. -ENOENT when absent. */
int rt_find_binary(const char *name, char **ret_path);

enum rt_check_status {
	RT_CHECK_OK,
	RT_CHECK_WARN, /* works, but degraded */
	RT_CHECK_FAIL,
};

struct rt_check {
	const char *name; /* short, stable: "root", "fuse", "overlayfs", ... */
	enum rt_check_status status;
	char *detail; /* what was found, or what is wrong */
	char *fix;    /* one line saying how to fix it; NULL when ok */
};

/* Run every host check. cni_path NULL = RT_DEFAULT_CNI_PATH. The array is
 * owned by the caller: free with rt_checks_free(). */
int rt_host_checks(const char *cni_path, struct rt_check **ret, size_t *ret_n);
struct rt_check *rt_checks_free(struct rt_check *checks, size_t n);

/* ======================================================================
 * Running a container without containerd (issue 8).
 *
 * The path is containerd's own: a bundle directory with config.json (spec.c),
 * a network namespace wired by CNI plugins (cni.c, netns.c), then
 * containerd-shim-runc-v2 started with the shim v2 `start` protocol and
 * driven over ttrpc (shim.c, ttrpc.c), which runs runc.
 * ====================================================================== */

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#define RT_SHIM_BINARY       "containerd-shim-runc-v2"
#define RT_DEFAULT_NAMESPACE "strata"
#define RT_DEFAULT_CNI_CONF  "/etc/cni/net.d"
#define RT_NETNS_DIR         "/run/netns"
#define RT_CNI_NETWORK       "strata"
#define RT_CNI_BRIDGE        "strata0"
#define RT_CNI_SUBNET        "10.4.88.0/24"
#define RT_CNI_GATEWAY       "10.4.88.1"

/* Say which binary is missing and how to install it: -ENOENT with
 * "runc not found in PATH: install it with 'apt-get install runc'". */
int rt_require_binary(const char *name, char **ret_path, struct strata_error **ret_err);

/* ---------------------------------------------------------------- ttrpc --
 * A ttrpc client on a unix socket (runtime/ttrpc.c). Thread-safe: calls from
 * several threads share one connection and are matched by stream id (odd,
 * from 1), so a blocking Wait and a Kill can be in flight together. */
#define RT_TTRPC_MAX_MESSAGE (4u << 20)

struct rt_ttrpc;

/* address: "unix:///path", "/path" or "@abstract". */
int rt_ttrpc_connect(const char *address, struct rt_ttrpc **ret, struct strata_error **ret_err);
/* Adopt a connected socket (tests, socketpair). Takes ownership of fd. */
int rt_ttrpc_new(int fd, struct rt_ttrpc **ret);
/* One unary call. timeout_ms < 0 waits forever; > 0 is also sent to the
 * server as timeout_nano. A non-OK status becomes -errno through
 * strata_grpc_to_errno() with the server's message in *ret_err. The reply
 * payload is malloc'd (may be NULL with length 0). */
int rt_ttrpc_call(struct rt_ttrpc *c, const char *service, const char *method, const void *req,
                  size_t req_len, int64_t timeout_ms, void **ret_payload, size_t *ret_len,
                  struct strata_error **ret_err);
struct rt_ttrpc *rt_ttrpc_free(struct rt_ttrpc *c);
DEFINE_TRIVIAL_CLEANUP_FUNC(struct rt_ttrpc *, rt_ttrpc_free)

/* ----------------------------------------------------------------- shim --
 * containerd-shim-runc-v2 (runtime/shim.c). */
struct rt_shim_params {
	const char *ns;             /* NULL = RT_DEFAULT_NAMESPACE */
	const char *id;             /* the bundle dir's basename */
	const char *bundle;         /* absolute */
	const char *address;        /* our stand-in for containerd's -address */
	const char *runtime_binary; /* runc (NULL) or crun, via runc Options */
};

enum rt_task_status {
	RT_TASK_UNKNOWN = 0,
	RT_TASK_CREATED = 1,
	RT_TASK_RUNNING = 2,
	RT_TASK_STOPPED = 3,
	RT_TASK_PAUSED = 4,
	RT_TASK_PAUSING = 5,
};
const char *rt_task_status_to_string(enum rt_task_status s);

struct rt_mount {
	char *type;
	char *source;
	char *target;   /* unused for rootfs mounts */
	char **options; /* NULL-terminated */
};

struct rt_task_create {
	const char *bundle;            /* absolute; the shim's cwd */
	const struct rt_mount *rootfs; /* n_rootfs mounts for the shim to mount */
	size_t n_rootfs;
	bool terminal;
	const char *stdin_path, *stdout_path, *stderr_path; /* NULL/"" = none */
	const char *runtime_binary; /* NULL = runc; passed as runc Options */
};

struct rt_task_state {
	uint32_t pid;
	enum rt_task_status status;
	uint32_t exit_status;
	bool terminal;
	int64_t exited_at; /* seconds since the epoch; 0 = unknown or still running */
};

struct rt_shim;

/* Start a shim for the bundle and connect to it. The bundle's `log` fifo is
 * created, opened O_RDWR|O_NONBLOCK and drained by a thread of ours before
 * `start` (a shim with no reader on it hangs). */
int rt_shim_start(const struct rt_shim_params *p, struct rt_shim **ret,
                  struct strata_error **ret_err);
/* Reconnect to a running shim (after a Strata restart) by its address. */
int rt_shim_connect(const char *address, const char *id, struct rt_shim **ret,
                    struct strata_error **ret_err);
const char *rt_shim_address(const struct rt_shim *s);

/* The Task API; exec_id NULL = the init process. */
int rt_shim_connect_task(struct rt_shim *s, uint32_t *ret_shim_pid, uint32_t *ret_task_pid,
                         struct strata_error **ret_err);
int rt_shim_create(struct rt_shim *s, const struct rt_task_create *t, uint32_t *ret_pid,
                   struct strata_error **ret_err);
int rt_shim_start_task(struct rt_shim *s, const char *exec_id, uint32_t *ret_pid,
                       struct strata_error **ret_err);
/* An additional process in the running container (Exec, then Start and
 * Wait with its exec_id, then Delete). */
struct rt_exec_process {
	const char *exec_id;
	bool terminal;
	const char *stdin_path, *stdout_path, *stderr_path; /* NULL/"" = none */
	const char *process_json; /* an OCI "process" object (rt_spec_exec_process) */
};
int rt_shim_exec(struct rt_shim *s, const struct rt_exec_process *e, struct strata_error **ret_err);
/* Blocks until the process exits (no timeout). */
int rt_shim_wait(struct rt_shim *s, const char *exec_id, uint32_t *ret_status,
                 struct strata_error **ret_err);
int rt_shim_kill(struct rt_shim *s, const char *exec_id, int sig, bool all,
                 struct strata_error **ret_err);
int rt_shim_delete(struct rt_shim *s, const char *exec_id, uint32_t *ret_status,
                   struct strata_error **ret_err);
int rt_shim_state(struct rt_shim *s, const char *exec_id, struct rt_task_state *ret,
                  struct strata_error **ret_err);
int rt_shim_resize_pty(struct rt_shim *s, const char *exec_id, unsigned width, unsigned height,
                       struct strata_error **ret_err);
int rt_shim_close_stdin(struct rt_shim *s, const char *exec_id, struct strata_error **ret_err);
/* Ask the shim to exit; a closed connection counts as success. The shim
 * answers before it exits, and on its way out removes the socket path it
 * was started with (twice: in its shutdown callbacks, and after serving,
 * reading <bundle>/address): until it is gone, a new shim of the same id
 * (same path) could lose its socket. ret_pidfd (may be NULL) receives a
 * pidfd of the shim for rt_shim_wait_exit, or -1 when it could not be had. */
int rt_shim_shutdown(struct rt_shim *s, int *ret_pidfd, struct strata_error **ret_err);
/* Wait up to timeout_ms for the process of a pidfd to exit (and reap it if
 * it is our child). pidfd < 0: nothing to wait for. -ETIMEDOUT. */
int rt_shim_wait_exit(int pidfd, int timeout_ms);
struct rt_shim *rt_shim_free(struct rt_shim *s);
DEFINE_TRIVIAL_CLEANUP_FUNC(struct rt_shim *, rt_shim_free)

/* Clean up after a shim that died: `shim ... -bundle B delete` (runc delete
 * --force, rootfs unmount) and removal of its /run/containerd/s socket.
 * ret_status (may be NULL) receives the reported exit status. */
int rt_shim_cleanup_dead(const struct rt_shim_params *p, uint32_t *ret_status,
                         struct strata_error **ret_err);
/* unix:///run/containerd/s/<sha256(address+ns+id)>, as the shim computes it. */
int rt_shim_socket_address(const struct rt_shim_params *p, char **ret);

/* ----------------------------------------------------------------- spec --
 * config.json generation (runtime/spec.c, user.c). */
enum rt_net_mode {
	RT_NET_BRIDGE = 0, /* a netns wired by CNI (default) */
	RT_NET_HOST,       /* the host's network namespace */
	RT_NET_NONE,       /* a netns with loopback only */
};

struct rt_volume {
	char *host;
	char *container;
	bool readonly;
};

struct rt_spec_opts {
	const char *id;
	const char *ns;         /* for cgroupsPath "/<ns>/<id>"; NULL = default */
	char **args;            /* NULL = image Cmd (after Entrypoint) */
	const char *entrypoint; /* NULL = image Entrypoint; "" clears it */
	char **env;             /* "K=V" (or "K" = take from our env), replace by key */
	const char *env_file;   /* lines K=V, # comments */
	const char *cwd;        /* NULL = image WorkingDir or "/" */
	const char *user;       /* NULL = image User or root */
	const char *hostname;   /* NULL = first 12 chars of id */
	const struct rt_volume *volumes;
	size_t n_volumes;
	bool tty;
	bool readonly_rootfs;
	enum rt_net_mode net;
	const char *netns_path;    /* bridge/none: /run/netns/X */
	const char *root_path;     /* root.path: "rootfs" or absolute */
	const char *resolv_conf;   /* host file bind-mounted at /etc/resolv.conf, or NULL */
	const char *hosts_file;    /* likewise /etc/hosts */
	const char *hostname_file; /* likewise /etc/hostname */
	/* With tty: the pty's size from the start (0 = unknown, ResizePty later). */
	unsigned console_width, console_height;
};

/* Parse "HOST:CTR[:ro|rw]" (HOST made absolute against cwd). */
int rt_volume_parse(const char *s, struct rt_volume *ret, struct strata_error **ret_err);
void rt_volume_done(struct rt_volume *v);

/* image_config: the image config's "config" object (or the whole image config
 * JSON, from which "config" is taken); NULL = empty. rootfs_fd: the rootfs
 * directory, used only for user/group lookup, confined to it. The result is a
 * JSON document (malloc'd). */
int rt_spec_generate(const char *image_config, int rootfs_fd, const struct rt_spec_opts *o,
                     char **ret_json, struct strata_error **ret_err);

struct rt_exec_opts {
	char **args;      /* NULL-terminated, required */
	char **env;       /* "K=V" (or "K" = take from our env), replace by key */
	const char *cwd;  /* NULL = the container's */
	const char *user; /* NULL = the container's; else resolved in rootfs_fd */
	bool tty;
	unsigned console_width, console_height; /* tty only; 0 = unknown */
};

/* The "process" of an exec in a container, as nerdctl derives it: the
 * container's own process (config.json's, in container_spec) with args,
 * terminal, env appended/replaced by key, and cwd and user when given. The
 * result is a JSON document (malloc'd). */
int rt_spec_exec_process(const char *container_spec, int rootfs_fd, const struct rt_exec_opts *o,
                         char **ret_json, struct strata_error **ret_err);

struct rt_user {
	uid_t uid;
	gid_t gid;
	gid_t *additional_gids;
	size_t n_additional_gids;
	char *home; /* NULL when unknown */
};
/* Resolve "uid", "uid:gid", "name", "name:group", "uid:group", "name:gid" in the
 * rootfs's /etc/passwd and /etc/group, read with RESOLVE_IN_ROOT so a symlink
 * in the image cannot point us at the host's files. */
int rt_user_resolve(int rootfs_fd, const char *spec, struct rt_user *ret,
                    struct strata_error **ret_err);
void rt_user_done(struct rt_user *u);

/* ------------------------------------------------------------------ CNI --
 * Network namespaces (runtime/netns.c) and CNI plugin chains (runtime/cni.c). */

/* Create /run/netns/<name> holding a fresh network namespace (made by a
 * child that unshares and is bind mounted by us). -EEXIST if present. */
int rt_netns_create(const char *name, char **ret_path, struct strata_error **ret_err);
/* Unmount and remove it; missing is fine. */
int rt_netns_remove(const char *name, struct strata_error **ret_err);

struct rt_cni_config {
	const char *conf_dir;    /* NULL = RT_DEFAULT_CNI_CONF */
	const char *plugin_path; /* ":"-separated; NULL = RT_DEFAULT_CNI_PATH */
};

struct rt_port_mapping {
	uint16_t host_port;
	uint16_t container_port;
	const char *protocol; /* "tcp" (NULL) or "udp" */
	const char *host_ip;  /* NULL = all */
};

/* Strata's default conflist (bridge strata0, 10.4.88.0/24), as JSON. */
char *rt_cni_default_conflist(void);
/* Load <conf_dir>/strata.conflist, writing the default there on first use. */
int rt_cni_load_conflist(const struct rt_cni_config *cfg, char **ret_json,
                         struct strata_error **ret_err);
/* Run ADD over the list in order (prevResult chained); returns the final
 * result JSON. On failure, already-added plugins are DELeted. */
int rt_cni_add(const struct rt_cni_config *cfg, const char *conflist, const char *container_id,
               const char *netns_path, const char *ifname, const struct rt_port_mapping *ports,
               size_t n_ports, char **ret_result, struct strata_error **ret_err);
/* DEL in reverse with the stored result (may be NULL); idempotent. */
int rt_cni_del(const struct rt_cni_config *cfg, const char *conflist, const char *container_id,
               const char *netns_path, const char *ifname, const struct rt_port_mapping *ports,
               size_t n_ports, const char *prev_result, struct strata_error **ret_err);
/* Bring up lo in a netns with the loopback plugin (--net none). */
int rt_cni_loopback(const struct rt_cni_config *cfg, const char *container_id,
                    const char *netns_path, bool add, struct strata_error **ret_err);
/* First IPv4 address ("a.b.c.d", no prefix) of a result; NULL if none. */
char *rt_cni_result_ip(const char *result);

/* ------------------------------------------------------------ container --
 * The entry point `strata run` uses (runtime/container.c). A container's
 * state lives in STATE/containers/<id>/ (STATE from rt_state_dir), which is
 * also the shim's bundle: config.json, rootfs/, log (shim log fifo),
 * strata.json (our record), network.json (conflist + CNI ADD result, for
 * DEL), stdin/stdout/stderr fifos (attached). Like containerd's state under
 * /run, it describes processes and is not fsync'd. Only a detached
 * container's output lives under ROOT/containers/<id>/container.log. */

#define RT_DEFAULT_STATE_DIR "/run/strata"

/* The runtime state dir: config's [runtime] state_dir when set, else the
 * directory of the daemon's socket address (so that Strata instances on
 * different addresses keep apart, and the default /run/strata/strata.sock
 * gives /run/strata), made absolute. config may be NULL. */
int rt_state_dir(const struct toml_value *config, const char *address, char **ret,
                 struct strata_error **ret_err);

struct rt_container_config {
	const char *root;              /* Strata's --root (detached logs) */
	const char *state_dir;         /* from rt_state_dir */
	const char *id;                /* NULL = random 64 hex */
	const char *name;              /* NULL = none */
	const char *image;             /* reference, for ps */
	const char *image_config;      /* image config JSON (may be NULL) */
	const char *rootfs;            /* an existing rootfs dir, or */
	const struct rt_mount *mounts; /* mounts we mount on <dir>/rootfs */
	size_t n_mounts;
	struct rt_spec_opts spec; /* id, netns_path, root_path are filled in */
	const struct rt_port_mapping *ports;
	size_t n_ports;
	struct rt_cni_config cni;
	const char *runtime_binary; /* runc (NULL) or crun */
	const char *ns;             /* NULL = RT_DEFAULT_NAMESPACE */
	bool detach;                /* output to container.log, not to us */
	bool interactive;           /* relay our stdin */
	/* Attached mode relays to fds 0/1/2, or to these when set. */
	bool custom_stdio;
	int stdin_fd, stdout_fd, stderr_fd;
};

struct rt_container;

/* Bundle, rootfs, network, shim, Create. Nothing runs yet. On failure,
 * everything made so far is removed. Same as begin + finish. */
int rt_container_create(const struct rt_container_config *cfg, struct rt_container **ret,
                        struct strata_error **ret_err);
/* The part that needs no image: directory, record, and the shim started
 * (it boots meanwhile: tens of ms better spent elsewhere, e.g. preparing the
 * snapshot). rootfs/mounts/image_config of cfg are not used yet. */
int rt_container_begin(const struct rt_container_config *cfg, struct rt_container **ret,
                       struct strata_error **ret_err);
/* The rest, with the same cfg now complete: rootfs, network, spec, Create.
 * On failure everything is removed (rt_container_delete); free c after. */
int rt_container_finish(struct rt_container *c, const struct rt_container_config *cfg,
                        struct strata_error **ret_err);
/* Start the init process; for attached containers also starts relaying
 * stdio between the container and our fds 0/1/2. */
int rt_container_start(struct rt_container *c, struct strata_error **ret_err);
/* Wait for exit, finish relaying output. *ret_code: exit status, 128+N for
 * a signal (what `run` exits with). */
int rt_container_wait(struct rt_container *c, int *ret_code, struct strata_error **ret_err);
int rt_container_kill(struct rt_container *c, int sig, struct strata_error **ret_err);
/* The container's pty size (containers created with spec.tty). */
int rt_container_resize(struct rt_container *c, unsigned width, unsigned height,
                        struct strata_error **ret_err);
/* Unmount the rootfs of a container whose task has stopped (-EBUSY if it
 * has not), so that its snapshot can go while rt_container_delete runs.
 * Nothing to do for a rootfs we did not mount. */
int rt_container_release_rootfs(struct rt_container *c, struct strata_error **ret_err);
/* Delete the task, stop the shim, CNI DEL, remove the netns, unmount the
 * rootfs and remove the directories. force: kill a running task first, and
 * clean up after a dead shim. */
int rt_container_delete(struct rt_container *c, bool force, struct strata_error **ret_err);

/* Load a container record by id (or unique id prefix, or name). */
int rt_container_load(const char *state_dir, const char *id, struct rt_container **ret,
                      struct strata_error **ret_err);

struct rt_container_info {
	char *id;
	char *name;
	char *image;
	char *command;
	char *created;              /* RFC 3339 */
	enum rt_task_status status; /* RT_TASK_UNKNOWN when the shim is gone */
	bool shim_alive;
	int exit_code; /* when STOPPED */
	uint32_t pid;
	uint32_t shim_pid; /* 0 when the shim is gone */
	char *ip;          /* bridge address or NULL */
	int64_t exited_at; /* seconds since the epoch, 0 = unknown (from the shim, or
	                    * recorded by rt_container_wait when the shim is gone) */
};
void rt_container_info_done(struct rt_container_info *i);
/* Query the shim (if any) and describe the container. */
int rt_container_inspect(struct rt_container *c, struct rt_container_info *ret,
                         struct strata_error **ret_err);
/* ids of all container records under state_dir (NULL-terminated, malloc'd). */
int rt_container_list(const char *state_dir, char ***ret_ids, struct strata_error **ret_err);

const char *rt_container_id(const struct rt_container *c);
const char *rt_container_dir(const struct rt_container *c);
/* A detached container's output (stdout and stderr), or NULL. */
const char *rt_container_log_path(const struct rt_container *c);
struct rt_container *rt_container_free(struct rt_container *c);
DEFINE_TRIVIAL_CLEANUP_FUNC(struct rt_container *, rt_container_free)

/* ----------------------------------------------------------------- exec --
 * A process run in a running container: `strata exec` (runtime/exec.c).
 * Its fifos live in <bundle>/exec/<exec id>/ (removed with the exec, or with
 * the container); those of an exec whose CLI died are collected by the next
 * exec in that container once the shim no longer runs the process. */
struct rt_exec_config {
	struct rt_exec_opts opts; /* args, env, cwd, user, tty, console size */
	bool interactive;         /* relay our stdin */
	/* Relays to fds 0/1/2, or to these when set. */
	bool custom_stdio;
	int stdin_fd, stdout_fd, stderr_fd;
};

struct rt_exec;

/* Exec, relay, Start. -ESRCH: "container X is not running" (its task is not
 * running, or its shim is gone). -ENOEXEC: the runtime could not start the
 * process (message from runc: not found, permission denied). c must outlive
 * the exec. */
int rt_exec_start(struct rt_container *c, const struct rt_exec_config *cfg, struct rt_exec **ret,
                  struct strata_error **ret_err);
/* Wait for exit, finish relaying output. *ret_code: exit status, 128+N for a
 * signal. */
int rt_exec_wait(struct rt_exec *e, int *ret_code, struct strata_error **ret_err);
int rt_exec_kill(struct rt_exec *e, int sig, struct strata_error **ret_err);
int rt_exec_resize(struct rt_exec *e, unsigned width, unsigned height,
                   struct strata_error **ret_err);
const char *rt_exec_id(const struct rt_exec *e);
/* Kill the process if still running (not waited for), Delete it in the
 * shim, remove its fifos. */
struct rt_exec *rt_exec_free(struct rt_exec *e);
DEFINE_TRIVIAL_CLEANUP_FUNC(struct rt_exec *, rt_exec_free)
