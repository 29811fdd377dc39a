package bus

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"net"
	"os"
	"time"
)

// Local sockets carry the unary calls between two daemons of one host on
// a calls stream over TLS on a Unix domain socket (see "Local sockets" in
// doc.go): one goroutine handoff per direction instead of quic-go's loops.

// MaxSocketPath is the longest local socket path, in bytes: Linux takes
// 108 with the terminating NUL.
const MaxSocketPath = 107

// ListenLocal makes Start listen on a Unix domain socket at path as well,
// for calls from daemons of the same host (see AddLocalPeer). A stale
// socket file at path is removed; a file that is not a socket, or a
// socket another process answers on, fails Start. The socket is made
// mode 0600 (put it in a directory the daemon owns); Stop removes it.
// Peers authenticate with the same TLS configuration and ALPN as on
// QUIC, so authorization is unchanged. Call it before Start.
func (b *Bus) ListenLocal(path string) error {
	if path == "" {
		return errors.New("bus: empty local socket path")
	}
	if len(path) > MaxSocketPath {
		return fmt.Errorf("bus: local socket path %q is %d bytes, over the limit of %d: give a shorter one", path, len(path), MaxSocketPath)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.started {
		return errors.New("bus: ListenLocal after Start")
	}
	b.localPath = path
	return nil
}

// LocalPath returns the path given to ListenLocal, "" for none.
func (b *Bus) LocalPath() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.localPath
}

// AddLocalPeer says that the daemon at bus address addr also listens on
// the Unix socket at path (its ListenLocal). Unary calls to addr then go
// over that socket (requests over 64 KiB on connections of their own, in
// place of TCP); server streams, batches and datagrams stay on QUIC. When
// the socket cannot be reached, calls take QUIC and the socket is tried
// again after the redial backoff.
// path "" removes addr's socket. Safe to call at any time.
func (b *Bus) AddLocalPeer(addr, path string) error {
	if addr == "" {
		return errors.New("bus: AddLocalPeer: empty address")
	}
	if len(path) > MaxSocketPath {
		return fmt.Errorf("bus: local socket path %q of %s is %d bytes, over the limit of %d", path, addr, len(path), MaxSocketPath)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	// Copy on write: every call reads the map without a lock.
	next := make(map[string]*sockPeer)
	if cur := b.local.Load(); cur != nil {
		maps.Copy(next, *cur)
	}
	if path == "" {
		delete(next, addr)
	} else {
		next[addr] = newSockPeer(addr, "unix", path)
	}
	b.local.Store(&next)
	return nil
}

// startLocal binds the local socket, if one is configured; b.mu is held.
func (b *Bus) startLocal() error {
	if b.localPath == "" {
		return nil
	}
	ln, err := listenUnix(b.localPath)
	if err != nil {
		return fmt.Errorf("bus: local socket: %w", err)
	}
	b.localLn = ln
	b.wg.Add(1)
	go b.sockAcceptLoop(ln, func(net.Conn) string { return "unix:" + b.localPath })
	return nil
}

// listenUnix listens on path with mode 0600, replacing a stale socket.
func listenUnix(path string) (*net.UnixListener, error) {
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode().Type() != fs.ModeSocket {
			return nil, fmt.Errorf("%s exists and is not a socket", path)
		}
		if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
			_ = c.Close()
			return nil, fmt.Errorf("%s is in use by another process", path)
		}
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("remove stale socket: %w", err)
		}
	}
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return nil, err
	}
	// Until this chmod the socket has the umask's mode; the handshake
	// still needs a certificate of the cluster CA.
	if err := os.Chmod(path, 0o600); err != nil {
		_ = ln.Close()
		return nil, fmt.Errorf("chmod %s: %w", path, err)
	}
	return ln, nil
}

// localCallsTo returns the calls stream to use for a call to addr over
// its local socket, with its slot acquired (the caller releases it), or
// nil when addr has no local socket or it cannot be reached now.
func (b *Bus) localCallsTo(ctx context.Context, addr string) (*callsClient, *peerConn) {
	lp := b.localPeer(addr)
	if lp == nil {
		return nil, nil
	}
	return lp.callsTo(ctx, b, spreadAt)
}

// localPeer returns addr's local socket pool (AddLocalPeer), nil for none.
func (b *Bus) localPeer(addr string) *sockPeer {
	peers := b.local.Load()
	if peers == nil {
		return nil
	}
	return (*peers)[addr]
}
