/* SPDX-License-Identifier: Apache-2.0 */
/* The command table: names, one-line summaries and usage (design contract). */
#include "cli.h"

static const struct cli_command commands[] = {
        {"serve", "Run the Strata daemon in the foreground",
         "serve [--metrics-address HOST:PORT] [--unmount-on-exit]\n\n"
         "Serves containerd's Snapshots and Content services and Strata's own\n"
         "Images service on --address. SIGTERM drains in-flight calls and exits 0.\n"
         "Lazy layers in use by a running container stay mounted when the daemon\n"
         "stops or crashes (their FUSE connections are kept by a holder process)\n"
         "and the next daemon resumes them; idle ones are unmounted. Removing the\n"
         "snapshots unmounts them for good.\n"
         "  --metrics-address HOST:PORT   serve Prometheus metrics (GET /metrics)\n"
         "                   there; off by default\n"
         "  --unmount-on-exit  unmount every lazy layer on exit, even in use",
         cmd_serve},
        {"pull", "Pull an image from a registry",
         "pull [--plain-http] [--platform P] [--lazy|--no-lazy] [--user USER[:PASS]] [--quiet] "
         "REF\n\n"
         "  --plain-http     use HTTP (implied for localhost and 127.0.0.1)\n"
         "  --platform P     os/arch[/variant] to select from an index (default: host)\n"
         "  --lazy           mount eStargz layers lazily (default when possible)\n"
         "  --no-lazy        download and unpack every layer\n"
         "  --user U[:P]     registry credentials (asks for the password on a terminal)\n"
         "  -q, --quiet      print only NAME@DIGEST of the pulled image",
         cmd_pull},
        {"images", "List images, or inspect one",
         "images [--json] [-q] | images inspect REF\n\n"
         "  --json           all fields of every image as a JSON array\n"
         "  -q, --quiet      names only\n"
         "  inspect REF      the image, its manifest and its config as one JSON document",
         cmd_images},
        {"rmi", "Remove images", "rmi REF...\n\nExits 1 if any of them could not be removed.",
         cmd_rmi},
        {"run", "Run a container from an image",
         "run [--rm] [-d] [-i] [-t] [--name N] [-e K=V]... [--env-file F] [-v HOST:CTR[:ro]]...\n"
         "           [-w DIR] [-u USER] [--entrypoint E] [--net bridge|host|none]\n"
         "           [-p HOSTPORT:CTRPORT[/tcp|udp]]... [--hostname H]\n"
         "           [--runtime-binary runc|crun] [--plain-http] [--platform P] REF [CMD...]\n\n"
         "Starts `strata serve` when nothing answers at --address, pulls REF if it\n"
         "is not local, and runs CMD (default: the image's) through\n"
         "containerd-shim-runc-v2 and runc. Attached (default): relays stdio,\n"
         "forwards Ctrl-C (twice kills) and exits with the container's exit code\n"
         "(128+N when killed by signal N). -d prints the container id and returns.\n\n"
         "  --rm             remove the container and its snapshot when it exits\n"
         "  -d, --detach     run in the background; output goes to 'strata logs'\n"
         "  -i, --interactive  relay stdin;  -t, --tty  allocate a terminal\n"
         "  --name N         a name usable instead of the id\n"
         "  -e K=V, --env-file F   environment (replaces the image's by key)\n"
         "  -v HOST:CTR[:ro] bind mount;  -w DIR working dir;  -u USER[:GROUP]\n"
         "  --entrypoint E   replace the image's entrypoint (\"\" clears it)\n"
         "  --net MODE       bridge (default: strata0, 10.4.88.0/24), host or none\n"
         "  -p [IP:]H:C[/udp]  publish container port C on host port H (bridge)\n"
         "  --hostname H     default: the first 12 characters of the id\n"
         "  --runtime-binary runc (default) or crun\n"
         "  --plain-http, --platform P   as for 'strata pull'",
         cmd_run},
        {"ps", "List containers",
         "ps [-a] [-q] [--json]\n\n"
         "  -a, --all        also stopped containers and those whose shim died\n"
         "  -q, --quiet      ids only\n"
         "  --json           every field of every container (running ones without -a)",
         cmd_ps},
        {"logs", "Print a container's output",
         "logs [-f] ID\n\n"
         "Detached containers (run -d) keep their output in a file.\n"
         "  -f, --follow     keep printing until the container exits",
         cmd_logs},
        {"stop", "Stop a container (SIGTERM, then SIGKILL)",
         "stop [-t SECONDS] ID...\n\n"
         "  -t, --time N     seconds between SIGTERM and SIGKILL (default 10)",
         cmd_stop},
        {"kill", "Send a signal to a container",
         "kill [-s SIGNAL] ID...\n\n"
         "  -s, --signal S   name (TERM, SIGTERM) or number (default KILL)",
         cmd_kill},
        {"rm", "Remove a container",
         "rm [-f] ID...\n\n"
         "Removes the task, its shim, network, rootfs mount, record and snapshot;\n"
         "cleans up after a container whose shim died.\n"
         "  -f, --force      kill a running container first",
         cmd_rm},
        {"exec", "Run a command in a running container",
         "exec [-i] [-t] [-e K=V]... [-w DIR] [-u USER[:GROUP]] ID CMD...\n\n"
         "Runs CMD in the running container ID (id, unique id prefix or name) with\n"
         "the container's environment, working dir, user and capabilities, relays\n"
         "stdio, forwards signals and exits with CMD's exit code (128+N when killed\n"
         "by signal N, 126 when it cannot be run, 127 when it is not found).\n"
         "  -i, --interactive  relay stdin;  -t, --tty  allocate a terminal\n"
         "  -e, --env K=V    add to or replace the container's environment\n"
         "  -w, --workdir DIR  working dir (absolute)\n"
         "  -u, --user U[:G] user and group, resolved in the container's /etc",
         cmd_exec},
        {"convert", "Convert an image to eStargz",
         "convert --estargz [--chunk-size N] [--prefetch-files FILE] [--plain-http]\n"
         "               [--compression-level L] [--threads N] [--jobs N] [--user U:P] [-q]\n"
         "               SRC DST\n\n"
         "SRC and DST are registry references or OCI layouts (oci:DIR[:TAG]); every\n"
         "platform of an index is converted. Runs here: no daemon needed. Nothing is\n"
         "written or pushed unless every layer converted.\n"
         "  --chunk-size N   file bytes per gzip member (default 4M)\n"
         "  --prefetch-files FILE  paths (one a line) placed before .prefetch.landmark\n"
         "  --plain-http     use HTTP (implied for localhost and 127.0.0.1)\n"
         "  --compression-level L  gzip level 1-12 (default 9)\n"
         "  --threads N      compression threads per layer (default: CPUs)\n"
         "  --jobs N         layers converted at once (default 2)\n"
         "  --user U:P       registry credentials\n"
         "  -q, --quiet      print only the new manifest or index digest",
         cmd_convert},
        {"snapshots", "Inspect and remove snapshots",
         "snapshots ls [--json] [-q] | info KEY | usage [KEY] | rm KEY... | mount KEY PARENT "
         "DIR\n\n"
         "Every snapshot of the store: Strata's own (@strata/...) and containerd's.\n"
         "  ls               key, parent, kind and, for lazy layers, bytes fetched\n"
         "  info KEY         one snapshot as JSON, with the lazy layer's counters\n"
         "                   (bytes/chunks fetched, cache hits/misses, health)\n"
         "  usage [KEY]      disk usage (size and inodes)\n"
         "  rm KEY...        remove (a chain an image uses is refused)\n"
         "  mount KEY PARENT DIR   a read-only view KEY (\"@strata/...\") on PARENT,\n"
         "                   mounted on DIR; undo: umount DIR; strata snapshots rm KEY",
         cmd_snapshots},
        {"content", "Inspect and verify the content store",
         "content ls|verify\n\n"
         "Reads the store under --root directly, read-only (no daemon needed).\n"
         "verify re-hashes every blob and exits 1 if any does not match its digest.",
         cmd_content},
        {"prune", "Remove unreferenced blobs and snapshots",
         "prune [--dry-run] [--cache[=KEEP]]\n\n"
         "  -n, --dry-run    list what would be removed, remove nothing\n"
         "  --cache[=KEEP]   also empty the lazy layers' chunk cache, or shrink it to\n"
         "                   KEEP bytes (suffixes k, M, G); chunks are fetched again\n"
         "                   when read\n\n"
         "Also removes container snapshots (@strata/ctr/ID) that `strata run` left\n"
         "behind: those with no container record in the runtime state dir, older\n"
         "than 60 s and not mounted. STRATA_PRUNE_GRACE=SECONDS changes the 60 s,\n"
         "for tests only.",
         cmd_prune},
        {"doctor", "Check this host for everything Strata needs",
         "doctor [--paths]\n\n"
         "Prints one line per check with the fix for each failure; exits 1 if any\n"
         "check fails. --paths prints the effective root, address and config.",
         cmd_doctor},
        {"version", "Print the version", "version", cmd_version},
};

const struct cli_command *cli_commands(size_t *ret_n)
{
	*ret_n = ELEMENTSOF(commands);
	return commands;
}
