// Package disktest gives tests a small real filesystem to fill: a tmpfs
// of a chosen size mounted under the test's temporary directory, and a
// filler that takes its free space down to a given level, as another
// process writing to a shared disk would.
//
// Mounting needs root (CAP_SYS_ADMIN); without it, or where tmpfs cannot
// be mounted (a container without the capability), Mount skips the test
// with a message saying so. The mount is removed when the test ends,
// failed or not (lazily, if something still holds it open). A test
// process killed by a signal cannot do that: its mount (named after its
// pid) is removed by the next Mount on the machine once that pid is gone.
package disktest

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// Mount mounts a tmpfs of size bytes on a new directory under
// t.TempDir() and returns the directory; the mount goes at cleanup.
// Cleanups registered after Mount run before the unmount, so a daemon
// started on the filesystem afterwards is stopped first.
func Mount(t testing.TB, size int64) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("disktest: mounting a tmpfs needs root; run as root to test a full disk")
	}
	unmountOrphans(t)
	dir := filepath.Join(t.TempDir(), fmt.Sprintf("tmpfs-%d", os.Getpid()))
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mount("tmpfs", dir, "tmpfs", syscall.MS_NOSUID|syscall.MS_NODEV, fmt.Sprintf("size=%d,mode=0755", size)); err != nil {
		t.Skipf("disktest: cannot mount a tmpfs on %s (%v); a full disk is not tested here", dir, err)
	}
	t.Cleanup(func() { Unmount(t, dir) })
	return dir
}

// unmountOrphans removes the tmpfs mounts of test processes that died
// before their cleanup ran: mount points named tmpfs-<pid> under the
// temporary directory whose pid is no longer running.
func unmountOrphans(t testing.TB) {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return
	}
	tmp := filepath.Clean(os.TempDir()) + "/"
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 5 || !strings.HasPrefix(f[4], tmp) {
			continue
		}
		var pid int
		if _, err := fmt.Sscanf(filepath.Base(f[4]), "tmpfs-%d", &pid); err != nil || pid <= 0 {
			continue
		}
		if syscall.Kill(pid, 0) == nil || !errors.Is(syscall.Kill(pid, 0), syscall.ESRCH) {
			continue // alive, or not ours to judge
		}
		if err := syscall.Unmount(f[4], syscall.MNT_DETACH); err == nil {
			t.Logf("disktest: removed %s, left mounted by test process %d", f[4], pid)
		}
	}
}

// Resize changes the size of the tmpfs Mount made at dir, as an operator
// growing a full filesystem would; its files stay.
func Resize(t testing.TB, dir string, size int64) {
	t.Helper()
	if err := syscall.Mount("tmpfs", dir, "tmpfs", syscall.MS_REMOUNT|syscall.MS_NOSUID|syscall.MS_NODEV, fmt.Sprintf("size=%d,mode=0755", size)); err != nil {
		t.Fatalf("disktest: resize %s to %d bytes: %v", dir, size, err)
	}
}

// Unmount removes the mount at dir, detaching it lazily when it is busy.
func Unmount(t testing.TB, dir string) {
	t.Helper()
	err := syscall.Unmount(dir, 0)
	if errors.Is(err, syscall.EBUSY) {
		err = syscall.Unmount(dir, syscall.MNT_DETACH)
	}
	if err != nil && !errors.Is(err, syscall.EINVAL) { // EINVAL: not mounted
		t.Errorf("disktest: unmount %s: %v", dir, err)
	}
}

// Free returns the bytes available on the filesystem holding path
// (statfs f_bavail) and its size.
func Free(path string) (avail, total uint64, err error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(path, &st); err != nil {
		return 0, 0, err
	}
	return st.Bavail * uint64(st.Bsize), st.Blocks * uint64(st.Bsize), nil
}

// Fill appends to the file at path until the filesystem holding it has at
// most leave bytes free (0: until it is full), writing in chunks of up to
// 1 MiB, and returns how many bytes it wrote. Running out of space is not
// an error: the filesystem is then full, as asked or not.
func Fill(path string, leave uint64) (int64, error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	buf := make([]byte, 1<<20)
	for i := range buf {
		buf[i] = byte(i) // not all zeros: nothing may compress or skip it
	}
	var wrote int64
	for {
		avail, _, err := Free(path)
		if err != nil {
			return wrote, err
		}
		if avail <= leave {
			break
		}
		n := min(uint64(len(buf)), avail-leave)
		k, err := f.Write(buf[:n])
		wrote += int64(k)
		if errors.Is(err, syscall.ENOSPC) {
			break
		}
		if err != nil {
			return wrote, err
		}
	}
	return wrote, f.Sync()
}
