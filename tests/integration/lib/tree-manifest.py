#!/usr/bin/python3
"""tree-manifest.py DIR: one line per entry under DIR, sorted by path, with
everything a user would compare between two root filesystems:

  PATH TYPE MODE UID:GID MTIME LINK-GROUP WHAT XATTRS

TYPE is file/dir/symlink/fifo/char/block/socket; MODE the octal permission
bits including setuid/setgid/sticky; MTIME whole seconds (not for symlinks
and not for directories: extracting into a directory touches it, and neither
containerd nor Strata promise a directory's mtime); LINK-GROUP "-" or, for a
non-directory with more than one link, the first path (in sorted order)
sharing its inode; WHAT the sha256 of a file's content, a symlink's target,
or a device's major,minor; XATTRS every extended attribute (name=hex value),
trusted.overlay.* excepted (the overlay's own bookkeeping).
"""
import hashlib
import os
import stat
import sys

root = sys.argv[1]
entries = []
for dirpath, dirnames, filenames in os.walk(root):
    for name in dirnames + filenames:
        entries.append(os.path.join(dirpath, name))
entries.sort()

first_of_inode = {}
for p in entries:
    st = os.lstat(p)
    if not stat.S_ISDIR(st.st_mode) and st.st_nlink > 1:
        first_of_inode.setdefault((st.st_dev, st.st_ino), p)


def rel(p):
    return "/" + os.path.relpath(p, root)


for p in entries:
    st = os.lstat(p)
    m = st.st_mode
    mtime = str(int(st.st_mtime))
    if stat.S_ISREG(m):
        kind = "file"
        h = hashlib.sha256()
        with open(p, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        what = h.hexdigest()
    elif stat.S_ISDIR(m):
        kind, what, mtime = "dir", "-", "-"
    elif stat.S_ISLNK(m):
        kind, what, mtime = "symlink", "->" + os.readlink(p), "-"
    elif stat.S_ISFIFO(m):
        kind, what = "fifo", "-"
    elif stat.S_ISCHR(m):
        kind, what = "char", "%d,%d" % (os.major(st.st_rdev), os.minor(st.st_rdev))
    elif stat.S_ISBLK(m):
        kind, what = "block", "%d,%d" % (os.major(st.st_rdev), os.minor(st.st_rdev))
    else:
        kind, what = "socket", "-"
    group = "-"
    if not stat.S_ISDIR(m) and st.st_nlink > 1:
        group = "=" + rel(first_of_inode[(st.st_dev, st.st_ino)])
    xattrs = []
    for k in sorted(os.listxattr(p, follow_symlinks=False)):
        if k.startswith("trusted.overlay."):
            continue
        xattrs.append("%s=%s" % (k, os.getxattr(p, k, follow_symlinks=False).hex()))
    print(" ".join([rel(p), kind, "%04o" % stat.S_IMODE(m), "%d:%d" % (st.st_uid, st.st_gid),
                    mtime, group, what, ",".join(xattrs) or "-"]))
