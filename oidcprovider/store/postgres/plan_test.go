package postgres

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/portcullis-auth/portcullis/oidcprovider/store"
)

// Keys is a range scan of the primary key, also in the generic plan a prepared statement ends
// up with, and Get a point lookup: neither reads the whole table.
func TestKeysUsesThePrimaryKeyRange(t *testing.T) {
	srv := newServer(t)
	s := openDSN(t, srv.Database(t), options{})
	var entries []store.Entry
	for i := range 20000 {
		entries = append(entries, store.Entry{Key: []byte(fmt.Sprintf("tok/%05d", i)), Value: []byte("v")})
	}
	must(t, s.Put(t.Context(), entries...))
	conn, err := s.pool.Acquire(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Release()
	plan := func(name, sql string, args ...string) string {
		t.Helper()
		for _, q := range []string{"ANALYZE portcullis_kv", "SET plan_cache_mode = force_generic_plan",
			"DEALLOCATE ALL", "PREPARE " + name + " AS " + sql} {
			if _, err := conn.Exec(t.Context(), q); err != nil {
				t.Fatalf("%s: %v", q, err)
			}
		}
		rows, err := conn.Query(t.Context(), "EXPLAIN EXECUTE "+name+"("+strings.Join(args, ", ")+")")
		if err != nil {
			t.Fatal(err)
		}
		var lines []string
		for rows.Next() {
			var l string
			if err := rows.Scan(&l); err != nil {
				t.Fatal(err)
			}
			lines = append(lines, l)
		}
		return strings.Join(lines, "\n")
	}
	defer conn.Exec(context.Background(), "RESET plan_cache_mode")
	p := plan("keys_range", s.sql.keysRange, `'\x746f6b2f30'::bytea`, `'\x746f6b2f31'::bytea`)
	if !strings.Contains(p, "Index Cond: ((key >= $1) AND (key < $2))") {
		t.Errorf("Keys' plan is not a range scan of the primary key:\n%s", p)
	}
	p = plan("get", s.sql.get, `'\x746f6b2f30'::bytea`)
	if !strings.Contains(p, "Index Cond: (key = $1)") {
		t.Errorf("Get's plan is not a lookup of the primary key:\n%s", p)
	}
}
