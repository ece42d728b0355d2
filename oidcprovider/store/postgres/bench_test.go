package postgres

import (
	"context"
	"fmt"
	"os"
	"sync/atomic"
	"testing"

	"github.com/portcullis-auth/portcullis/internal/pgtest"
	"github.com/portcullis-auth/portcullis/oidcprovider/store"
)

// Throughput of the store's point operations on the package's server (loopback, fsync off), 16
// callers at once, for the figures in the report:
//
//	go test -run - -bench . ./oidcprovider/store/postgres/
//
// With PORTCULLIS_BENCH_FSYNC=1 it starts a server of its own with fsync on, where the commits of
// transactions that notify (a Put under a watched prefix) queue behind one another on
// PostgreSQL's notification lock while plain commits are flushed in groups.
func BenchmarkOps(b *testing.B) {
	srv := server
	if os.Getenv("PORTCULLIS_BENCH_FSYNC") != "" {
		srv = pgtest.Start(b)
		conn := srv.DSN("portcullis")
		s, err := Open(b.Context(), Config{DSN: conn}, nil)
		if err != nil {
			b.Fatal(err)
		}
		for _, q := range []string{"ALTER SYSTEM SET fsync = on", "SELECT pg_reload_conf()"} {
			if _, err := s.pool.Exec(context.Background(), q); err != nil {
				b.Fatal(err)
			}
		}
		s.Destruct()
	}
	if srv == nil {
		b.Skip(serverSkip)
	}
	s, err := Open(b.Context(), Config{DSN: srv.Database(b)}, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Destruct()
	var fsync string
	if err := s.pool.QueryRow(b.Context(), "SHOW fsync").Scan(&fsync); err != nil {
		b.Fatal(err)
	}
	b.Logf("fsync %s", fsync)
	value := make([]byte, 300) // about an access-token record
	s.Watch([]byte("tok/"), func([]byte) {})
	var watched, unwatched atomic.Int64
	put := func(prefix string, n *atomic.Int64) func(b *testing.B) {
		return func(b *testing.B) {
			b.SetParallelism(8)
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					k := []byte(fmt.Sprintf("%s%d", prefix, n.Add(1)))
					if err := s.Put(b.Context(), store.Entry{Key: k, Value: value, TTL: 3600e9}); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
	b.Run("PutWatched", put("tok/", &watched))
	b.Run("PutUnwatched", put("other/", &unwatched))
	b.Run("Get", func(b *testing.B) {
		var i atomic.Int64
		b.SetParallelism(8)
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				k := []byte(fmt.Sprintf("tok/%d", i.Add(1)%watched.Load()+1))
				if _, err := s.Get(b.Context(), k); err != nil {
					b.Fatal(err)
				}
			}
		})
	})
}
