package postgres

import (
	"errors"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/portcullis-auth/portcullis/internal/pgtest"
	"github.com/portcullis-auth/portcullis/oidcprovider/duration"
	"github.com/portcullis-auth/portcullis/oidcprovider/store"
)

// freezer is a TCP proxy that can stop passing bytes without closing anything, as a cut cable
// or a lost route would: neither side hears of it.
type freezer struct {
	l      net.Listener
	target string
	mu     sync.Mutex
	frozen bool
	thaw   chan struct{}
	conns  []net.Conn
}

func newFreezer(t *testing.T, target string) *freezer {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &freezer{l: l, target: target, thaw: make(chan struct{})}
	close(f.thaw)
	t.Cleanup(func() {
		l.Close()
		f.setFrozen(false)
		f.mu.Lock()
		for _, c := range f.conns {
			c.Close()
		}
		f.mu.Unlock()
	})
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go f.serve(c)
		}
	}()
	return f
}

func (f *freezer) setFrozen(v bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if v == f.frozen {
		return
	}
	f.frozen = v
	if v {
		f.thaw = make(chan struct{})
	} else {
		close(f.thaw)
	}
}

// wait blocks while frozen.
func (f *freezer) wait() {
	f.mu.Lock()
	ch := f.thaw
	f.mu.Unlock()
	<-ch
}

func (f *freezer) serve(c net.Conn) {
	f.wait()
	up, err := net.Dial("tcp", f.target)
	if err != nil {
		c.Close()
		return
	}
	f.mu.Lock()
	f.conns = append(f.conns, c, up)
	f.mu.Unlock()
	pipe := func(dst, src net.Conn) {
		buf := make([]byte, 32<<10)
		for {
			n, err := src.Read(buf)
			if n > 0 {
				f.wait()
				if _, werr := dst.Write(buf[:n]); werr != nil {
					break
				}
			}
			if err != nil {
				break
			}
		}
		dst.Close()
		src.Close()
	}
	go pipe(up, c)
	go pipe(c, up)
}

// The network to the database goes silent (nothing is closed): the listener's keepalive notices
// within about a second, operations fail with ErrUnavailable after their timeout
// rather than hanging, and when the network comes back the store recovers by itself.
func TestSilentNetworkLoss(t *testing.T) {
	srv := newServer(t)
	dsn := srv.Database(t)
	proxy := newFreezer(t, fmt.Sprintf("%s:%d", srv.Host, srv.Port))
	cfg, _ := pgx.ParseConfig(dsn)
	s := openConfig(t, Config{Address: "tcp://" + proxy.l.Addr().String(), Database: cfg.Database, Username: pgtest.User,
		Password: pgtest.Password, Timeout: duration.Duration(time.Second)}, options{})
	rec := newRecorder()
	s.Watch([]byte("k/"), rec.fn)
	must(t, s.Put(t.Context(), store.Entry{Key: []byte("k/1"), Value: []byte("v")}))
	if k := rec.next(t, time.Second); k != "k/1" {
		t.Fatalf("got %q", k)
	}

	proxy.setFrozen(true)
	took := waitFor(t, 2*time.Second, "Trusted() false after the network went silent", func() bool { return !s.Trusted() })
	t.Logf("Trusted() false %v after the network went silent", took)
	start := time.Now()
	_, err := s.Get(t.Context(), []byte("k/1"))
	if !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("Get over a silent network: %v, want ErrUnavailable", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("Get over a silent network took %v (timeout 1s)", d)
	}

	proxy.setFrozen(false)
	took = waitFor(t, 5*time.Second, "Trusted() true after the network came back", s.Trusted)
	t.Logf("Trusted() true %v after the network came back", took)
	if k := rec.next(t, time.Second); k != "<nil>" {
		t.Fatalf("got %q, want the nil key first", k)
	}
	v, err := s.Get(t.Context(), []byte("k/1"))
	for i := 0; err != nil && i < 3; i++ { // a connection frozen mid-statement may fail once more
		v, err = s.Get(t.Context(), []byte("k/1"))
	}
	if err != nil || string(v) != "v" {
		t.Fatalf("after the network came back: %q %v", v, err)
	}
}
